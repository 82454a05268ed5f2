//! `.properties` text → `java.util.Properties` parsing → broker and topic config building.
//! Any input may be refused with an error; none may panic, and a config that validates must
//! yield everything the broker derives from it at startup.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::config::{properties, BrokerConfig, TopicConfig};

fuzz_target!(|data: &[u8]| {
    // Files are read as UTF-8; lossy keeps the fuzzer's non-UTF-8 mutations useful.
    let text = String::from_utf8_lossy(data);
    let Ok(pairs) = properties::parse(&text) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    // Topic-level overrides (CreateTopics / AlterConfigs take the same keys).
    if let Ok(topic) = TopicConfig::default().with_overrides(pairs.iter().copied()) {
        let _ = topic.entries_against(&TopicConfig::default());
        let _ = (topic.compact(), topic.delete());
    }

    let mut config = BrokerConfig::default();
    if config.apply(pairs.iter().copied()).is_err() {
        return;
    }
    for key in BrokerConfig::KEYS {
        assert!(config.get(key).is_some(), "{key} has no rendering");
    }
    if config.validate().is_err() {
        return;
    }
    // What a starting broker derives from a valid config.
    let _ = config.log_dirs();
    let _ = (config.retention_ms(), config.roll_ms());
    let _ = config.parsed_listeners();
    let _ = config.parsed_advertised_listeners();
    let _ = config.inter_broker_listener();
    if let Some(listener) = config.client_listener() {
        let _ = listener.bind_addr();
    }
    let defaults = config.topic_defaults();
    let _ = defaults.entries_against(&TopicConfig::default());
    let _ = weir::protocol::connection::ConnectionLimits::from_config(&config);
    let _ = weir::transport::tcp::TcpSettings::from_config(&config);
    let _ = weir::transport::server::ServerLimits::from_config(&config);
    let _ = weir::actors::replication::fetcher::FetcherSettings::from_config(&config);
    let _ = weir::broker_node::ControlledShutdownPolicy::from_config(&config);
});
