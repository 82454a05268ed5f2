//! weir's configuration: Kafka's `.properties` files and key names, one typed struct per scope
//! (broker, topic) with Kafka's defaults, `--set key=value` overrides, unknown keys reported by
//! name and invalid values refused with an error naming the key.
//!
//! Both scopes are declared with [`config_struct!`], so the key table, the defaults, parsing
//! and the rendering that DescribeConfigs answers with come from one declaration.

pub mod dynamic;
pub mod properties;

use std::path::{Path, PathBuf};

/// A value that can be read from and written back to a properties string.
pub trait ConfigValue: Sized + Clone + PartialEq {
    fn parse_value(s: &str) -> Result<Self, String>;
    fn render(&self) -> String;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse_value(s: &str) -> Result<Self, String> {
                s.trim().parse::<$t>().map_err(|e| format!("{e}"))
            }
            fn render(&self) -> String { self.to_string() }
        }
    )*};
}
int_value!(i16, i32, i64, u16, u32, u64, usize);

impl ConfigValue for f64 {
    fn parse_value(s: &str) -> Result<Self, String> {
        s.trim().parse::<f64>().map_err(|e| format!("{e}"))
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for bool {
    fn parse_value(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("expected true or false, got {other:?}")),
        }
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for String {
    fn parse_value(s: &str) -> Result<Self, String> {
        Ok(s.trim().to_string())
    }
    fn render(&self) -> String {
        self.clone()
    }
}

/// Kafka's LIST type: comma-separated, blanks dropped.
impl ConfigValue for Vec<String> {
    fn parse_value(s: &str) -> Result<Self, String> {
        Ok(s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect())
    }
    fn render(&self) -> String {
        self.join(",")
    }
}

/// A key whose Kafka default is null: an empty string means "unset".
impl<T: ConfigValue> ConfigValue for Option<T> {
    fn parse_value(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() || s.trim() == "null" {
            Ok(None)
        } else {
            T::parse_value(s).map(Some)
        }
    }
    fn render(&self) -> String {
        self.as_ref().map(ConfigValue::render).unwrap_or_default()
    }
}

/// A configuration error always names the key and the offending value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid value {value:?} for configuration {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("unknown configuration {key}")]
    Unknown { key: String },
}

/// One rendered key as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub is_default: bool,
}

/// Declares a config struct from one table of `field: Type = "kafka.key", default;` rows.
macro_rules! config_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $key:literal, $default:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// Every key this struct knows, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// Sets one key; `Err(Unknown)` for a key this scope does not have.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
                match key {
                    $( $key => {
                        self.$field = <$ty as ConfigValue>::parse_value(value).map_err(|reason| {
                            ConfigError::Invalid { key: key.to_string(), value: value.to_string(), reason }
                        })?;
                        Ok(())
                    } )*
                    _ => Err(ConfigError::Unknown { key: key.to_string() }),
                }
            }

            /// The current value of a key, rendered as a properties string.
            pub fn get(&self, key: &str) -> Option<String> {
                match key {
                    $( $key => Some(ConfigValue::render(&self.$field)), )*
                    _ => None,
                }
            }

            /// Every key with its value and whether it differs from `baseline`.
            pub fn entries_against(&self, baseline: &Self) -> Vec<ConfigEntry> {
                vec![$( ConfigEntry {
                    name: $key,
                    value: ConfigValue::render(&self.$field),
                    is_default: self.$field == baseline.$field,
                }, )*]
            }
        }
    };
}

config_struct! {
    /// A broker's configuration, with Kafka's key names and defaults.
    pub struct BrokerConfig {
        /// -1 asks the coordination service for a generated id above `reserved.broker.max.id`.
        broker_id: i32 = "broker.id", -1;
        listeners: Vec<String> = "listeners", vec!["PLAINTEXT://:9092".into()];
        advertised_listeners: Vec<String> = "advertised.listeners", vec![];
        listener_security_protocol_map: Vec<String> = "listener.security.protocol.map",
            vec!["PLAINTEXT:PLAINTEXT".into(), "SSL:SSL".into(), "SASL_PLAINTEXT:SASL_PLAINTEXT".into(), "SASL_SSL:SASL_SSL".into()];
        inter_broker_listener_name: Option<String> = "inter.broker.listener.name", None;
        broker_rack: Option<String> = "broker.rack", None;
        /// `host:port[,host:port][/chroot]` for ZooKeeper, `weir://host:port` for a weir coordinator.
        zookeeper_connect: Option<String> = "zookeeper.connect", None;
        zookeeper_session_timeout_ms: u64 = "zookeeper.session.timeout.ms", 18_000;
        zookeeper_connection_timeout_ms: Option<u64> = "zookeeper.connection.timeout.ms", None;
        reserved_broker_max_id: i32 = "reserved.broker.max.id", 1000;
        log_dir: String = "log.dir", "/tmp/weir-logs".into();
        /// Kafka's default is null, which falls back to `log.dir`.
        log_dirs: Vec<String> = "log.dirs", vec![];
        num_partitions: i32 = "num.partitions", 1;
        default_replication_factor: i16 = "default.replication.factor", 1;
        min_insync_replicas: i32 = "min.insync.replicas", 1;
        auto_create_topics_enable: bool = "auto.create.topics.enable", true;
        delete_topic_enable: bool = "delete.topic.enable", true;
        message_max_bytes: i32 = "message.max.bytes", 1_048_588;
        socket_request_max_bytes: i32 = "socket.request.max.bytes", 104_857_600;
        log_segment_bytes: i32 = "log.segment.bytes", 1_073_741_824;
        log_roll_ms: Option<i64> = "log.roll.ms", None;
        log_roll_hours: i32 = "log.roll.hours", 168;
        log_index_interval_bytes: i32 = "log.index.interval.bytes", 4096;
        log_index_size_max_bytes: i32 = "log.index.size.max.bytes", 10_485_760;
        log_retention_ms: Option<i64> = "log.retention.ms", None;
        log_retention_minutes: Option<i32> = "log.retention.minutes", None;
        log_retention_hours: i32 = "log.retention.hours", 168;
        log_retention_bytes: i64 = "log.retention.bytes", -1;
        log_retention_check_interval_ms: i64 = "log.retention.check.interval.ms", 300_000;
        log_flush_interval_messages: i64 = "log.flush.interval.messages", i64::MAX;
        log_flush_interval_ms: Option<i64> = "log.flush.interval.ms", None;
        log_cleanup_policy: Vec<String> = "log.cleanup.policy", vec!["delete".into()];
        log_message_timestamp_type: String = "log.message.timestamp.type", "CreateTime".into();
        log_cleaner_enable: bool = "log.cleaner.enable", true;
        /// Cleans that run at once; each gets its share of the dedupe buffer.
        log_cleaner_threads: i32 = "log.cleaner.threads", 1;
        log_cleaner_dedupe_buffer_size: i64 = "log.cleaner.dedupe.buffer.size", 134_217_728;
        log_cleaner_io_buffer_size: i32 = "log.cleaner.io.buffer.size", 524_288;
        log_cleaner_io_buffer_load_factor: f64 = "log.cleaner.io.buffer.load.factor", 0.9;
        log_cleaner_io_max_bytes_per_second: f64 = "log.cleaner.io.max.bytes.per.second", f64::MAX;
        log_cleaner_delete_retention_ms: i64 = "log.cleaner.delete.retention.ms", 86_400_000;
        log_cleaner_min_cleanable_ratio: f64 = "log.cleaner.min.cleanable.ratio", 0.5;
        log_cleaner_min_compaction_lag_ms: i64 = "log.cleaner.min.compaction.lag.ms", 0;
        log_cleaner_max_compaction_lag_ms: i64 = "log.cleaner.max.compaction.lag.ms", i64::MAX;
        log_cleaner_backoff_ms: i64 = "log.cleaner.backoff.ms", 15_000;
        offsets_topic_num_partitions: i32 = "offsets.topic.num.partitions", 50;
        offsets_topic_replication_factor: i16 = "offsets.topic.replication.factor", 3;
        offsets_topic_segment_bytes: i32 = "offsets.topic.segment.bytes", 104_857_600;
        offsets_commit_required_acks: i16 = "offsets.commit.required.acks", -1;
        offsets_commit_timeout_ms: i32 = "offsets.commit.timeout.ms", 5000;
        offsets_retention_minutes: i32 = "offsets.retention.minutes", 10_080;
        offsets_retention_check_interval_ms: i64 = "offsets.retention.check.interval.ms", 600_000;
        group_initial_rebalance_delay_ms: i32 = "group.initial.rebalance.delay.ms", 3000;
        group_min_session_timeout_ms: i32 = "group.min.session.timeout.ms", 6000;
        group_max_session_timeout_ms: i32 = "group.max.session.timeout.ms", 1_800_000;
        group_max_size: i32 = "group.max.size", i32::MAX;
        replica_lag_time_max_ms: i64 = "replica.lag.time.max.ms", 30_000;
        replica_fetch_max_bytes: i32 = "replica.fetch.max.bytes", 1_048_576;
        replica_fetch_response_max_bytes: i32 = "replica.fetch.response.max.bytes", 10_485_760;
        replica_fetch_wait_max_ms: i32 = "replica.fetch.wait.max.ms", 500;
        replica_fetch_min_bytes: i32 = "replica.fetch.min.bytes", 1;
        replica_fetch_backoff_ms: i32 = "replica.fetch.backoff.ms", 1000;
        replica_high_watermark_checkpoint_interval_ms: i64 = "replica.high.watermark.checkpoint.interval.ms", 5000;
        unclean_leader_election_enable: bool = "unclean.leader.election.enable", false;
        auto_leader_rebalance_enable: bool = "auto.leader.rebalance.enable", true;
        leader_imbalance_check_interval_seconds: i64 = "leader.imbalance.check.interval.seconds", 300;
        leader_imbalance_per_broker_percentage: i32 = "leader.imbalance.per.broker.percentage", 10;
        controlled_shutdown_enable: bool = "controlled.shutdown.enable", true;
        controlled_shutdown_max_retries: i32 = "controlled.shutdown.max.retries", 3;
        controlled_shutdown_retry_backoff_ms: i64 = "controlled.shutdown.retry.backoff.ms", 5000;
        controller_socket_timeout_ms: i32 = "controller.socket.timeout.ms", 30_000;
        transactional_id_expiration_ms: i32 = "transactional.id.expiration.ms", 604_800_000;
        producer_id_expiration_ms: i32 = "producer.id.expiration.ms", 86_400_000;
        max_connections: i32 = "max.connections", i32::MAX;
        max_connections_per_ip: i32 = "max.connections.per.ip", i32::MAX;
        /// `ip:count` pairs, each overriding `max.connections.per.ip` for one address.
        max_connections_per_ip_overrides: Vec<String> = "max.connections.per.ip.overrides", vec![];
        connections_max_idle_ms: i64 = "connections.max.idle.ms", 600_000;
        queued_max_requests: i32 = "queued.max.requests", 500;
        /// Bytes of requests read and not yet handled, broker-wide; ≤ 0 is unbounded.
        queued_max_request_bytes: i64 = "queued.max.request.bytes", -1;
        request_timeout_ms: i32 = "request.timeout.ms", 30_000;
        /// weir's own: a topic created without its own `min.insync.replicas`, with fewer
        /// replicas than the broker's, records its replica count as its `min.insync.replicas`
        /// (`weir cluster` sets it when its safe default of 2 applies, so that a replication
        /// factor 1 topic still takes acks=all); false is Kafka's behaviour.
        min_insync_replicas_capped_by_replication_factor: bool = "min.insync.replicas.capped.by.replication.factor", false;
        /// weir's own: the Prometheus endpoint's port; off unless set.
        metrics_port: Option<u16> = "metrics.port", None;
        /// weir's own: `host:port` of the browser console (`weir broker`); off unless set.
        ui_listener: Option<String> = "ui.listener", None;
        /// weir's own: `.log` files the process keeps open at once; beyond it the least
        /// recently used are closed and reopened on their next use. 0: half the soft
        /// open-file limit. Brokers sharing a process (`weir cluster`) share the bound.
        log_max_open_files: i32 = "log.max.open.files", 0;
        /// weir's own: index files the process keeps memory-mapped at once; beyond it the
        /// least recently used are unmapped. 0: half of `vm.max_map_count`.
        log_max_index_maps: i32 = "log.max.index.maps", 0;
    }
}

/// Keys of Kafka's broker config that weir accepts and ignores (threads, buffers, JMX):
/// a user's `server.properties` keeps working and start-up lists them.
pub const KAFKA_KEYS_NOT_IMPLEMENTED: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "num.replica.fetchers",
    "num.recovery.threads.per.data.dir",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.num.partitions",
    "group.coordinator.rebalance.protocols",
    "zookeeper.set.acl",
    "zookeeper.ssl.client.enable",
    "log.preallocate",
    "background.threads",
    "compression.type",
    "confluent.support.metrics.enable",
    "jmx.port",
    "sasl.enabled.mechanisms",
    "security.inter.broker.protocol",
    "ssl.keystore.location",
    "authorizer.class.name",
    "metric.reporters",
];

impl BrokerConfig {
    /// Loads `--config FILE` (if any), then applies each `--set key=value` in order.
    /// Invalid values are errors; unknown and not-implemented keys are returned as
    /// warnings, each naming the key.
    pub fn load(file: Option<&Path>, sets: &[String]) -> anyhow::Result<(Self, Vec<String>)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(path) = file {
            pairs.extend(properties::load_file(path)?);
        }
        for set in sets {
            pairs.push(parse_set(set)?);
        }
        let mut config = Self::default();
        let warnings = config.apply(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        config.validate()?;
        Ok((config, warnings))
    }

    /// Applies key/value pairs; returns the warnings for keys it did not use.
    pub fn apply<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        for (key, value) in pairs {
            match self.set(key, value) {
                Ok(()) => {}
                Err(ConfigError::Unknown { key }) => {
                    if KAFKA_KEYS_NOT_IMPLEMENTED.contains(&key.as_str())
                        || key.starts_with("ssl.")
                        || key.starts_with("sasl.")
                        || key.starts_with("confluent.")
                    {
                        warnings.push(format!(
                            "{key} is a Kafka key weir does not implement; ignored"
                        ));
                    } else {
                        warnings.push(format!("unknown configuration {key}; ignored"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(warnings)
    }

    /// Cross-key checks Kafka makes at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason: &str| ConfigError::Invalid {
            key: key.into(),
            value,
            reason: reason.into(),
        };
        if self.num_partitions < 1 {
            return Err(invalid(
                "num.partitions",
                self.num_partitions.to_string(),
                "must be at least 1",
            ));
        }
        if self.default_replication_factor < 1 {
            return Err(invalid(
                "default.replication.factor",
                self.default_replication_factor.to_string(),
                "must be at least 1",
            ));
        }
        if self.min_insync_replicas < 1 {
            return Err(invalid(
                "min.insync.replicas",
                self.min_insync_replicas.to_string(),
                "must be at least 1",
            ));
        }
        if self.log_segment_bytes < 14 {
            return Err(invalid(
                "log.segment.bytes",
                self.log_segment_bytes.to_string(),
                "must be at least 14",
            ));
        }
        if self.message_max_bytes < 0 {
            return Err(invalid(
                "message.max.bytes",
                self.message_max_bytes.to_string(),
                "must not be negative",
            ));
        }
        for (key, value) in [
            ("log.max.open.files", self.log_max_open_files),
            ("log.max.index.maps", self.log_max_index_maps),
        ] {
            if value < 0 {
                return Err(invalid(key, value.to_string(), "must not be negative"));
            }
        }
        if self.log_index_size_max_bytes < 8 {
            return Err(invalid(
                "log.index.size.max.bytes",
                self.log_index_size_max_bytes.to_string(),
                "must be at least 8",
            ));
        }
        for policy in &self.log_cleanup_policy {
            if policy != "delete" && policy != "compact" {
                return Err(invalid(
                    "log.cleanup.policy",
                    policy.clone(),
                    "must be delete or compact",
                ));
            }
        }
        if self.log_cleaner_threads < 0 {
            return Err(invalid(
                "log.cleaner.threads",
                self.log_cleaner_threads.to_string(),
                "must not be negative",
            ));
        }
        if self.log_cleaner_enable
            && self.log_cleaner_dedupe_buffer_size / (self.log_cleaner_threads.max(1) as i64)
                <= 1024 * 1024
        {
            return Err(invalid(
                "log.cleaner.dedupe.buffer.size",
                self.log_cleaner_dedupe_buffer_size.to_string(),
                "must be at least 1MB per cleaner thread",
            ));
        }
        if self.log_cleaner_io_buffer_size < 0 {
            return Err(invalid(
                "log.cleaner.io.buffer.size",
                self.log_cleaner_io_buffer_size.to_string(),
                "must not be negative",
            ));
        }
        if !(self.log_cleaner_io_buffer_load_factor > 0.0
            && self.log_cleaner_io_buffer_load_factor <= 1.0)
        {
            return Err(invalid(
                "log.cleaner.io.buffer.load.factor",
                self.log_cleaner_io_buffer_load_factor.to_string(),
                "must be in (0, 1]",
            ));
        }
        if !(0.0..=1.0).contains(&self.log_cleaner_min_cleanable_ratio) {
            return Err(invalid(
                "log.cleaner.min.cleanable.ratio",
                self.log_cleaner_min_cleanable_ratio.to_string(),
                "must be in [0, 1]",
            ));
        }
        if self.log_cleaner_backoff_ms < 0 {
            return Err(invalid(
                "log.cleaner.backoff.ms",
                self.log_cleaner_backoff_ms.to_string(),
                "must not be negative",
            ));
        }
        if self.log_message_timestamp_type != "CreateTime"
            && self.log_message_timestamp_type != "LogAppendTime"
        {
            return Err(invalid(
                "log.message.timestamp.type",
                self.log_message_timestamp_type.clone(),
                "must be CreateTime or LogAppendTime",
            ));
        }
        for listener in &self.listeners {
            Listener::parse(listener)
                .map_err(|reason| invalid("listeners", listener.clone(), &reason))?;
        }
        for listener in &self.advertised_listeners {
            Listener::parse(listener)
                .map_err(|reason| invalid("advertised.listeners", listener.clone(), &reason))?;
        }
        if let Err(reason) = crate::protocol::connection_quotas::parse_overrides(
            &self.max_connections_per_ip_overrides,
        ) {
            return Err(invalid(
                "max.connections.per.ip.overrides",
                self.max_connections_per_ip_overrides.join(","),
                &reason,
            ));
        }
        if let Some(name) = &self.inter_broker_listener_name {
            if !self.parsed_listeners().iter().any(|l| &l.name == name) {
                return Err(invalid(
                    "inter.broker.listener.name",
                    name.clone(),
                    "must name one of the listeners",
                ));
            }
        }
        Ok(())
    }

    /// `log.dirs`, falling back to `log.dir` as Kafka does.
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        if self.log_dirs.is_empty() {
            vec![PathBuf::from(&self.log_dir)]
        } else {
            self.log_dirs.iter().map(PathBuf::from).collect()
        }
    }

    /// `log.retention.ms`, else minutes, else hours (Kafka's precedence); -1 keeps forever.
    pub fn retention_ms(&self) -> i64 {
        self.log_retention_ms
            .or(self.log_retention_minutes.map(|m| m as i64 * 60_000))
            .unwrap_or(self.log_retention_hours as i64 * 3_600_000)
    }

    /// `log.roll.ms`, else `log.roll.hours`.
    pub fn roll_ms(&self) -> i64 {
        self.log_roll_ms
            .unwrap_or(self.log_roll_hours as i64 * 3_600_000)
    }

    /// The parsed `listeners`.
    pub fn parsed_listeners(&self) -> Vec<Listener> {
        self.listeners
            .iter()
            .filter_map(|l| Listener::parse(l).ok())
            .collect()
    }

    /// The name of the listener brokers talk to each other on: `inter.broker.listener.name`,
    /// else (as Kafka derives it from `security.inter.broker.protocol=PLAINTEXT`) the listener
    /// called PLAINTEXT, else the first one.
    pub fn inter_broker_listener(&self) -> String {
        if let Some(name) = &self.inter_broker_listener_name {
            return name.clone();
        }
        let listeners = self.parsed_listeners();
        listeners
            .iter()
            .find(|l| l.name == "PLAINTEXT")
            .or(listeners.first())
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "PLAINTEXT".into())
    }

    /// The listener clients are served on: the first one that is not the inter-broker
    /// listener, else the inter-broker listener itself (then shared by clients and peers).
    pub fn client_listener(&self) -> Option<Listener> {
        let inter = self.inter_broker_listener();
        let listeners = self.parsed_listeners();
        listeners
            .iter()
            .find(|l| l.name != inter)
            .or(listeners.first())
            .cloned()
    }

    /// The listeners clients are told about: `advertised.listeners`, else `listeners`.
    pub fn parsed_advertised_listeners(&self) -> Vec<Listener> {
        let source = if self.advertised_listeners.is_empty() {
            &self.listeners
        } else {
            &self.advertised_listeners
        };
        source
            .iter()
            .filter_map(|l| Listener::parse(l).ok())
            .collect()
    }

    /// The topic-level defaults this broker applies to a topic without overrides.
    pub fn topic_defaults(&self) -> TopicConfig {
        TopicConfig {
            cleanup_policy: self.log_cleanup_policy.clone(),
            delete_retention_ms: self.log_cleaner_delete_retention_ms,
            flush_messages: self.log_flush_interval_messages,
            flush_ms: self.log_flush_interval_ms.unwrap_or(i64::MAX),
            index_interval_bytes: self.log_index_interval_bytes,
            max_compaction_lag_ms: self.log_cleaner_max_compaction_lag_ms,
            max_message_bytes: self.message_max_bytes,
            message_timestamp_type: self.log_message_timestamp_type.clone(),
            min_cleanable_dirty_ratio: self.log_cleaner_min_cleanable_ratio,
            min_compaction_lag_ms: self.log_cleaner_min_compaction_lag_ms,
            min_insync_replicas: self.min_insync_replicas,
            retention_bytes: self.log_retention_bytes,
            retention_ms: self.retention_ms(),
            segment_bytes: self.log_segment_bytes,
            segment_index_bytes: self.log_index_size_max_bytes,
            segment_ms: self.roll_ms(),
            unclean_leader_election_enable: self.unclean_leader_election_enable,
            ..TopicConfig::default()
        }
    }
}

config_struct! {
    /// Per-topic configuration (Kafka's topic-level keys); defaults come from the broker.
    pub struct TopicConfig {
        cleanup_policy: Vec<String> = "cleanup.policy", vec!["delete".into()];
        compression_type: String = "compression.type", "producer".into();
        delete_retention_ms: i64 = "delete.retention.ms", 86_400_000;
        file_delete_delay_ms: i64 = "file.delete.delay.ms", 60_000;
        flush_messages: i64 = "flush.messages", i64::MAX;
        flush_ms: i64 = "flush.ms", i64::MAX;
        /// Accepted as Kafka does; weir does not throttle replication (it never reassigns).
        follower_replication_throttled_replicas: Vec<String> = "follower.replication.throttled.replicas", vec![];
        index_interval_bytes: i32 = "index.interval.bytes", 4096;
        /// Accepted as Kafka does; weir does not throttle replication (it never reassigns).
        leader_replication_throttled_replicas: Vec<String> = "leader.replication.throttled.replicas", vec![];
        /// Tiered storage's local part; -2 means "as retention.*". weir has no tiered storage.
        local_retention_bytes: i64 = "local.retention.bytes", -2;
        local_retention_ms: i64 = "local.retention.ms", -2;
        max_compaction_lag_ms: i64 = "max.compaction.lag.ms", i64::MAX;
        max_message_bytes: i32 = "max.message.bytes", 1_048_588;
        /// CreateTime records older than now minus this are refused (INVALID_TIMESTAMP).
        message_timestamp_before_max_ms: i64 = "message.timestamp.before.max.ms", i64::MAX;
        /// CreateTime records newer than now plus this are refused (INVALID_TIMESTAMP).
        message_timestamp_after_max_ms: i64 = "message.timestamp.after.max.ms", i64::MAX;
        /// The older key for both bounds at once (deprecated in Kafka 3.6).
        message_timestamp_difference_max_ms: i64 = "message.timestamp.difference.max.ms", i64::MAX;
        message_timestamp_type: String = "message.timestamp.type", "CreateTime".into();
        /// Accepted as Kafka does; weir serves stored batches as they are, never converted.
        message_downconversion_enable: bool = "message.downconversion.enable", true;
        /// Deprecated since Kafka 3.0, which validates it as a version and ignores it
        /// (`inter.broker.protocol.version` >= 3.0); so does weir, which writes record batch
        /// v2 only.
        message_format_version: String = "message.format.version", "3.0-IV1".into();
        min_cleanable_dirty_ratio: f64 = "min.cleanable.dirty.ratio", 0.5;
        min_compaction_lag_ms: i64 = "min.compaction.lag.ms", 0;
        min_insync_replicas: i32 = "min.insync.replicas", 1;
        preallocate: bool = "preallocate", false;
        /// Only false: weir has no tiered storage.
        remote_storage_enable: bool = "remote.storage.enable", false;
        retention_bytes: i64 = "retention.bytes", -1;
        retention_ms: i64 = "retention.ms", 604_800_000;
        segment_bytes: i32 = "segment.bytes", 1_073_741_824;
        segment_index_bytes: i32 = "segment.index.bytes", 10_485_760;
        segment_jitter_ms: i64 = "segment.jitter.ms", 0;
        segment_ms: i64 = "segment.ms", 604_800_000;
        unclean_leader_election_enable: bool = "unclean.leader.election.enable", false;
    }
}

/// Kafka's `MetadataVersion` strings: 2 to 4 dot-separated numbers (`0.10.0`, `0.10.0.1`,
/// `2.8`), optionally with an `-IV<n>` suffix (`3.0-IV1`).
fn is_kafka_version(value: &str) -> bool {
    let (version, suffix) = match value.split_once('-') {
        Some((version, suffix)) => (version, Some(suffix)),
        None => (value, None),
    };
    let numbers: Vec<&str> = version.split('.').collect();
    (2..=4).contains(&numbers.len())
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && suffix.is_none_or(|s| {
            s.strip_prefix("IV")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

impl TopicConfig {
    /// The CreateTime timestamps a leader accepts at `now_ms`, per Kafka's
    /// `message.timestamp.before.max.ms` / `after.max.ms` (each the tighter of it and the older
    /// `message.timestamp.difference.max.ms`); None when the topic uses LogAppendTime.
    pub fn accepted_timestamps(&self, now_ms: i64) -> Option<std::ops::RangeInclusive<i64>> {
        if self.message_timestamp_type == "LogAppendTime" {
            return None;
        }
        let before = self
            .message_timestamp_before_max_ms
            .min(self.message_timestamp_difference_max_ms);
        let after = self
            .message_timestamp_after_max_ms
            .min(self.message_timestamp_difference_max_ms);
        Some(now_ms.saturating_sub(before)..=now_ms.saturating_add(after))
    }

    /// Applies topic overrides on top of `self`; unknown keys and invalid values are errors
    /// (Kafka answers INVALID_CONFIG for both).
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let mut config = self.clone();
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for policy in &self.cleanup_policy {
            if policy != "delete" && policy != "compact" {
                return Err(ConfigError::Invalid {
                    key: "cleanup.policy".into(),
                    value: policy.clone(),
                    reason: "must be delete or compact".into(),
                });
            }
        }
        if self.segment_bytes < 14 {
            return Err(ConfigError::Invalid {
                key: "segment.bytes".into(),
                value: self.segment_bytes.to_string(),
                reason: "must be at least 14".into(),
            });
        }
        if !is_kafka_version(&self.message_format_version) {
            return Err(ConfigError::Invalid {
                key: "message.format.version".into(),
                value: self.message_format_version.clone(),
                reason: "must be a Kafka version such as 2.8 or 3.0-IV1".into(),
            });
        }
        if self.remote_storage_enable {
            return Err(ConfigError::Invalid {
                key: "remote.storage.enable".into(),
                value: "true".into(),
                reason: "this broker has no remote log storage (tiered storage)".into(),
            });
        }
        for (key, value) in [
            (
                "message.timestamp.before.max.ms",
                self.message_timestamp_before_max_ms,
            ),
            (
                "message.timestamp.after.max.ms",
                self.message_timestamp_after_max_ms,
            ),
            (
                "message.timestamp.difference.max.ms",
                self.message_timestamp_difference_max_ms,
            ),
        ] {
            if value < 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    value: value.to_string(),
                    reason: "must not be negative".into(),
                });
            }
        }
        if self.min_insync_replicas < 1 {
            return Err(ConfigError::Invalid {
                key: "min.insync.replicas".into(),
                value: self.min_insync_replicas.to_string(),
                reason: "must be at least 1".into(),
            });
        }
        // Kafka's ranges for the compaction keys.
        let checks: [(&str, String, bool, &str); 4] = [
            (
                "min.cleanable.dirty.ratio",
                self.min_cleanable_dirty_ratio.to_string(),
                (0.0..=1.0).contains(&self.min_cleanable_dirty_ratio),
                "must be in [0, 1]",
            ),
            (
                "delete.retention.ms",
                self.delete_retention_ms.to_string(),
                self.delete_retention_ms >= 0,
                "must not be negative",
            ),
            (
                "min.compaction.lag.ms",
                self.min_compaction_lag_ms.to_string(),
                self.min_compaction_lag_ms >= 0,
                "must not be negative",
            ),
            (
                "max.compaction.lag.ms",
                self.max_compaction_lag_ms.to_string(),
                self.max_compaction_lag_ms >= 1,
                "must be at least 1",
            ),
        ];
        for (key, value, ok, reason) in checks {
            if !ok {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    value,
                    reason: reason.into(),
                });
            }
        }
        Ok(())
    }

    pub fn compact(&self) -> bool {
        self.cleanup_policy.iter().any(|p| p == "compact")
    }

    pub fn delete(&self) -> bool {
        self.cleanup_policy.iter().any(|p| p == "delete")
    }
}

/// `NAME://host:port`; an empty host means every interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once("://")
            .ok_or_else(|| "expected NAME://host:port".to_string())?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| "expected NAME://host:port".to_string())?;
        let port = port
            .parse::<u16>()
            .map_err(|e| format!("bad port {port:?}: {e}"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if name.is_empty() {
            return Err("listener name is empty".into());
        }
        Ok(Self {
            name: name.to_string(),
            host,
            port,
        })
    }

    /// The address to bind: an empty host binds every interface.
    pub fn bind_addr(&self) -> String {
        if self.host.is_empty() {
            format!("0.0.0.0:{}", self.port)
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits one `--set key=value`.
pub fn parse_set(set: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = set
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--set expects key=value, got {set:?}"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = BrokerConfig::default();
        assert_eq!(c.broker_id, -1);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.log_segment_bytes, 1 << 30);
        assert_eq!(c.retention_ms(), 7 * 24 * 3_600_000);
        assert_eq!(c.offsets_topic_num_partitions, 50);
        assert_eq!(c.log_dirs(), vec![PathBuf::from("/tmp/weir-logs")]);
    }

    #[test]
    fn sets_override_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.properties");
        std::fs::write(
            &file,
            "broker.id=7\nnum.partitions=3\nnum.network.threads=3\nbogus.key=1\n",
        )
        .unwrap();
        let (c, warnings) = BrokerConfig::load(Some(&file), &["num.partitions=6".into()]).unwrap();
        assert_eq!(c.broker_id, 7);
        assert_eq!(c.num_partitions, 6);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("num.network.threads"));
        assert!(warnings[1].contains("bogus.key"));
    }

    #[test]
    fn an_invalid_value_names_its_key() {
        let err = BrokerConfig::load(None, &["num.partitions=lots".into()]).unwrap_err();
        assert!(err.to_string().contains("num.partitions"), "{err}");
        let err = BrokerConfig::load(None, &["listeners=nonsense".into()]).unwrap_err();
        assert!(err.to_string().contains("listeners"), "{err}");
    }

    #[test]
    fn open_segment_file_bounds_default_to_zero_and_refuse_negatives() {
        let (c, warnings) = BrokerConfig::load(
            None,
            &[
                "log.max.open.files=100".into(),
                "log.max.index.maps=0".into(),
            ],
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((c.log_max_open_files, c.log_max_index_maps), (100, 0));
        for key in ["log.max.open.files", "log.max.index.maps"] {
            let err = BrokerConfig::load(None, &[format!("{key}=-1")]).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn retention_precedence_is_ms_then_minutes_then_hours() {
        let mut c = BrokerConfig::default();
        c.set("log.retention.hours", "1").unwrap();
        assert_eq!(c.retention_ms(), 3_600_000);
        c.set("log.retention.minutes", "2").unwrap();
        assert_eq!(c.retention_ms(), 120_000);
        c.set("log.retention.ms", "5").unwrap();
        assert_eq!(c.retention_ms(), 5);
    }

    #[test]
    fn topic_overrides_refuse_unknown_keys() {
        let base = BrokerConfig::default().topic_defaults();
        let t = base
            .with_overrides([
                ("retention.ms", "1000"),
                ("cleanup.policy", "compact,delete"),
            ])
            .unwrap();
        assert_eq!(t.retention_ms, 1000);
        assert!(t.compact() && t.delete());
        assert!(matches!(
            base.with_overrides([("nope", "1")]),
            Err(ConfigError::Unknown { .. })
        ));
        assert!(matches!(
            base.with_overrides([("cleanup.policy", "shred")]),
            Err(ConfigError::Invalid { .. })
        ));
        let entries = t.entries_against(&base);
        let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert!(!retention.is_default);
    }

    /// Kafka 3.x accepts the deprecated key (librdkafka's 0092 test sets it to 0.10.0.0) and
    /// ignores it; a value that is not a version is INVALID_CONFIG there too.
    #[test]
    fn message_format_version_is_accepted_as_a_version_and_ignored() {
        let t = BrokerConfig::default().topic_defaults();
        assert_eq!(t.message_format_version, "3.0-IV1");
        for value in ["0.10.0.0", "0.10.0", "2.8", "3.0-IV1", "0.11.0-IV2"] {
            let altered = t
                .with_overrides([("message.format.version", value)])
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(altered.message_format_version, value);
        }
        for value in ["", "banana", "3", "3.0-", "3.0-IVx", "1.2.3.4.5"] {
            match t.with_overrides([("message.format.version", value)]) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "message.format.version"),
                other => panic!("{value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn compaction_keys_have_kafkas_names_defaults_and_ranges() {
        let c = BrokerConfig::default();
        assert!(c.log_cleaner_enable);
        assert_eq!(c.log_cleaner_threads, 1);
        assert_eq!(c.log_cleaner_dedupe_buffer_size, 128 << 20);
        assert_eq!(c.log_cleaner_io_buffer_size, 512 << 10);
        assert_eq!(c.log_cleaner_io_buffer_load_factor, 0.9);
        assert_eq!(c.log_cleaner_backoff_ms, 15_000);
        let t = c.topic_defaults();
        assert_eq!(t.delete_retention_ms, 86_400_000);
        assert_eq!(t.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(
            (t.min_compaction_lag_ms, t.max_compaction_lag_ms),
            (0, i64::MAX)
        );
        for (key, value) in [
            ("min.cleanable.dirty.ratio", "1.5"),
            ("delete.retention.ms", "-1"),
            ("min.compaction.lag.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
        ] {
            match t.with_overrides([(key, value)]) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
        let err =
            BrokerConfig::load(None, &["log.cleaner.dedupe.buffer.size=1000".into()]).unwrap_err();
        assert!(
            err.to_string().contains("log.cleaner.dedupe.buffer.size"),
            "{err}"
        );
        let err =
            BrokerConfig::load(None, &["log.cleaner.min.cleanable.ratio=2".into()]).unwrap_err();
        assert!(
            err.to_string().contains("log.cleaner.min.cleanable.ratio"),
            "{err}"
        );
    }

    #[test]
    fn listeners_parse_kafka_forms() {
        let l = Listener::parse("PLAINTEXT://:9092").unwrap();
        assert_eq!(
            (l.name.as_str(), l.host.as_str(), l.port),
            ("PLAINTEXT", "", 9092)
        );
        assert_eq!(l.bind_addr(), "0.0.0.0:9092");
        let l = Listener::parse("REPLICATION://127.0.0.1:19092").unwrap();
        assert_eq!(l.bind_addr(), "127.0.0.1:19092");
        assert!(Listener::parse("127.0.0.1:9092").is_err());
    }
}
