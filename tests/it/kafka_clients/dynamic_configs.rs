//! Dynamic broker configs (KIP-226): a broker's own values through confluent-kafka, and the
//! cluster-wide default (the BROKER resource `""`, which the librdkafka and Python clients
//! cannot name; Kafka's own AdminClient and `kafka-configs.sh --entity-default` can) through
//! raw requests.

use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::versions::Conn;
use super::{python, Weir};

const BROKER: i8 = 4;
const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// IncrementalAlterConfigs SET (`Some`) or DELETE (`None`) of one key of BROKER `name`.
fn alter(conn: &mut Conn, name: &str, key: &str, value: Option<&str>) -> (i16, Option<String>) {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(s(name))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s(key))
                .with_config_operation(if value.is_some() { 0 } else { 1 })
                .with_value(value.map(s))]),
    ]);
    let response: IncrementalAlterConfigsResponse =
        conn.call(ApiKey::IncrementalAlterConfigs, 1, &request);
    let r = &response.responses[0];
    (
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// `key` of BROKER `name` as DescribeConfigs v4 answers: `(value, source)`.
fn describe(conn: &mut Conn, name: &str, key: &str) -> Option<(String, i8)> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(s(name))
            .with_configuration_keys(Some(vec![s(key)]))]);
    let response: DescribeConfigsResponse = conn.call(ApiKey::DescribeConfigs, 4, &request);
    let result = &response.results[0];
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    result.configs.first().map(|c| {
        (
            c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            c.config_source,
        )
    })
}

/// Waits until broker `index` (0-based) describes `key` as `expected`.
fn wait_for(weir: &Weir, index: usize, key: &str, expected: Option<(&str, i8)>) {
    let id = (index + 1).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = Conn::new(&weir.brokers[index]);
        let got = describe(&mut conn, &id, key);
        let matches = match (&got, expected) {
            (Some((value, source)), Some((v, src))) => value == v && *source == src,
            (Some((_, source)), None) => *source != SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG,
            (None, _) => false,
        };
        if matches {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "broker {id}: {key} is {got:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn confluent_kafka_alters_describes_and_deletes_a_brokers_own_dynamic_configs() {
    let weir = Weir::start(1);
    let out = python(
        "confluent_kafka_client.py",
        &["broker-configs", &weir.bootstrap()],
        Duration::from_secs(120),
    );
    for check in [
        "per-broker config",
        "topic defaults follow",
        "static keys refused",
        "delete restores the static value",
    ] {
        assert!(out.contains(check), "no `{check}` in\n{out}");
    }
}

#[test]
fn the_cluster_wide_default_reaches_every_broker_and_one_that_restarts() {
    let mut weir = Weir::start(3);
    let mut first = Conn::new(&weir.brokers[0]);
    let (code, message) = alter(&mut first, "", "log.retention.ms", Some("7200000"));
    assert_eq!(code, 0, "{message:?}");

    // Set through broker 1, in force on broker 3.
    wait_for(
        &weir,
        2,
        "log.retention.ms",
        Some(("7200000", SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)),
    );
    // `""` describes only what was set there.
    let mut third = Conn::new(&weir.brokers[2]);
    assert_eq!(
        describe(&mut third, "", "log.retention.ms"),
        Some(("7200000".to_string(), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG))
    );
    assert_eq!(describe(&mut third, "", "log.segment.bytes"), None);

    // Kafka's refusals: a per-broker key at the cluster level, another broker's id.
    let (code, message) = alter(
        &mut first,
        "",
        "sasl.kerberos.min.time.before.relogin",
        Some("58000"),
    );
    assert_eq!(code, 42, "{message:?}");
    assert!(
        message
            .unwrap_or_default()
            .contains("broker id must be specified"),
        "the refusal does not say why"
    );
    let (code, _) = alter(&mut first, "2", "log.retention.ms", Some("1"));
    assert_eq!(code, 42, "broker 1 altered broker 2's own config");

    // A broker that restarts gets the default again from the controller.
    assert!(weir.console("crash 3").starts_with("ok"));
    assert!(weir.console("restart 3").starts_with("ok"));
    wait_for(
        &weir,
        2,
        "log.retention.ms",
        Some(("7200000", SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)),
    );

    let (code, message) = alter(&mut first, "", "log.retention.ms", None);
    assert_eq!(code, 0, "{message:?}");
    wait_for(&weir, 1, "log.retention.ms", None);
}
