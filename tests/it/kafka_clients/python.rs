//! confluent-kafka, kafka-python and aiokafka, each through its script in tests/clients/.

use std::time::Duration;

use super::{python, Weir};

const LIMIT: Duration = Duration::from_secs(180);

fn roundtrips(script: &str) {
    let weir = Weir::start(1);
    for acks in ["0", "1", "all"] {
        let out = python(script, &["roundtrip", &weir.bootstrap(), acks], LIMIT);
        eprint!("{out}");
    }
}

fn features(script: &str) {
    let weir = Weir::start(1);
    let out = python(script, &["features", &weir.bootstrap()], LIMIT);
    for check in [
        "compression gzip",
        "compression snappy",
        "compression lz4",
        "compression zstd",
        "headers",
        "null key and value",
        "CreateTime timestamps",
        "ListOffsets by time",
    ] {
        assert!(out.contains(check), "{script}: no `{check}` in\n{out}");
    }
}

fn admin(script: &str, extra_checks: &[&str]) {
    let weir = Weir::start(1);
    let out = python(script, &["admin", &weir.bootstrap()], LIMIT);
    for check in [
        "create topic",
        "describe topics",
        "describe configs",
        "alter configs",
        "create partitions",
        "delete records",
        "describe cluster",
        "delete topics",
    ]
    .iter()
    .chain(extra_checks)
    {
        assert!(out.contains(check), "{script}: no `{check}` in\n{out}");
    }
}

#[test]
fn confluent_kafka_round_trips_100k_records_with_acks_0_1_and_all() {
    roundtrips("confluent_kafka_client.py");
}

#[test]
fn confluent_kafka_reads_back_every_codec_headers_nulls_and_timestamps() {
    features("confluent_kafka_client.py");
}

#[test]
fn confluent_kafka_admin_manages_topics_configs_and_sees_the_cluster() {
    admin("confluent_kafka_client.py", &["authorized operations"]);
}

/// AlterReplicaLogDirs as Kafka answers it: pinning a replica to the dir it is in succeeds
/// (kafka-python's own test_alter_replica_log_dirs does this), an unknown dir is
/// LOG_DIR_NOT_FOUND and a partition without a replica here REPLICA_NOT_AVAILABLE.
#[test]
fn kafka_python_alter_replica_log_dirs_to_the_current_dir_succeeds() {
    let weir = Weir::start(1);
    let out = python(
        "kafka_python_client.py",
        &["log-dirs", &weir.bootstrap()],
        LIMIT,
    );
    for check in [
        "alter replica log dirs: own dir",
        "alter replica log dirs: errors",
    ] {
        assert!(out.contains(check), "no `{check}` in\n{out}");
    }
}

#[test]
fn kafka_python_round_trips_100k_records_with_acks_0_1_and_all() {
    roundtrips("kafka_python_client.py");
}

#[test]
fn kafka_python_reads_back_every_codec_headers_nulls_and_timestamps() {
    features("kafka_python_client.py");
}

#[test]
fn kafka_python_default_idempotent_producer_stores_each_record_once_in_order() {
    let weir = Weir::start(1);
    let out = python(
        "kafka_python_client.py",
        &["idempotent", &weir.bootstrap()],
        LIMIT,
    );
    assert!(
        out.contains("exactly once"),
        "no exactly-once check in\n{out}"
    );
}

#[test]
fn kafka_python_admin_manages_topics_configs_and_sees_the_cluster() {
    admin("kafka_python_client.py", &[]);
}

#[test]
fn aiokafka_round_trips_100k_records_with_acks_0_1_and_all() {
    roundtrips("aiokafka_client.py");
}

#[test]
fn aiokafka_reads_back_every_codec_headers_nulls_and_timestamps() {
    features("aiokafka_client.py");
}

#[test]
fn aiokafka_admin_manages_topics_configs_and_sees_the_cluster() {
    admin("aiokafka_client.py", &[]);
}
