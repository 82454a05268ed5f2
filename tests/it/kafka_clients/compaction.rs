//! Log compaction against a real `weir cluster`, with real clients: kcat produces and
//! consumes, the rdkafka crate creates topics, produces with timestamps and commits offsets in
//! a loop. What is checked is what a consumer sees (each key's latest value, in offset order;
//! tombstones gone) and what the broker keeps on disk (the partition shrinks and stays small).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::executor::block_on;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::kcat::{consume_formatted, kcat};
use super::rdkafka_client::admin;
use super::Weir;
use crate::support::wait_until;

/// The cleaner looks every 100 ms and retention every 200 ms, so the tests wait seconds.
const FAST_CLEANER: &[&str] = &[
    "log.cleaner.backoff.ms=100",
    "log.retention.check.interval.ms=200",
    "group.initial.rebalance.delay.ms=0",
];
const PATIENCE: Duration = Duration::from_secs(90);

fn start(extra: &[&str]) -> (Weir, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let sets: Vec<&str> = FAST_CLEANER.iter().chain(extra).copied().collect();
    let weir = Weir::start_in(1, 0, data.path(), &sets);
    (weir, data)
}

fn create_topic(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let mut new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = block_on(admin(bootstrap).create_topics(&[new], &AdminOptions::new()))
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|e| panic!("creating {topic}: {e:?}"));
    }
}

/// Bytes of the partition's `.log` files on broker 1's disk.
fn log_bytes(data: &Path, topic: &str) -> u64 {
    let dir = data.join("broker-1").join(format!("{topic}-0"));
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `kcat -P -K:` of `lines` in small batches (a batch must fit the topic's small segments);
/// `-Z` turns an empty value into a null one (a tombstone).
fn produce(bootstrap: &str, topic: &str, lines: &[String]) {
    let mut input = Vec::new();
    for line in lines {
        writeln!(input, "{line}").unwrap();
    }
    kcat(
        &[
            "-b",
            bootstrap,
            "-P",
            "-t",
            topic,
            "-K:",
            "-Z",
            "-X",
            "batch.num.messages=50",
            "-X",
            "linger.ms=1",
        ],
        Some(&input),
    );
}

/// Every record from the beginning: `(offset, key, value)`, `None` for a null value.
fn consume(bootstrap: &str, topic: &str) -> Vec<(i64, String, Option<String>)> {
    consume_formatted(bootstrap, topic, "beginning", "%o %k %S %s\\n")
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let offset = parts.next().unwrap().parse().unwrap();
            let key = parts.next().unwrap().to_string();
            let len: i64 = parts.next().unwrap().parse().unwrap();
            let value = parts.next().unwrap_or("").to_string();
            (offset, key, (len >= 0).then_some(value))
        })
        .collect()
}

/// Offsets strictly increase, and each key's values come in the order they were produced
/// (value `v<i>` for the i-th line) with the latest one last.
fn check_compacted(records: &[(i64, String, Option<String>)], latest: &BTreeMap<String, String>) {
    assert!(
        records.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets out of order"
    );
    let mut last_index: BTreeMap<&str, i64> = BTreeMap::new();
    let mut last_value: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for (_, k, v) in records {
        if let Some(v) = v {
            let i: i64 = v.trim_start_matches('v').parse().unwrap();
            let prev = last_index.insert(k, i).unwrap_or(-1);
            assert!(i > prev, "key {k}: v{i} after v{prev}");
        }
        last_value.insert(k, v.as_deref());
    }
    for (k, v) in latest {
        assert_eq!(
            last_value.get(k.as_str()),
            Some(&Some(v.as_str())),
            "key {k}"
        );
    }
}

#[test]
fn a_compacted_topic_shrinks_to_the_latest_value_per_key_read_in_offset_order() {
    let (weir, data) = start(&[]);
    let b = weir.bootstrap();
    create_topic(
        &b,
        "table",
        &[("cleanup.policy", "compact"), ("segment.bytes", "8192")],
    );
    let lines: Vec<String> = (0..20_000)
        .map(|i| format!("key-{}:v{i}", i % 100))
        .collect();
    let latest: BTreeMap<String, String> = (19_900..20_000)
        .map(|i| (format!("key-{}", i % 100), format!("v{i}")))
        .collect();
    produce(&b, "table", &lines);
    // Fully compacted, 100 keys plus an 8 KiB active segment are a few hundred records.
    let records = wait_until("the partition to shrink", PATIENCE, || {
        let size = log_bytes(data.path(), "table");
        if size == 0 || size >= 48 * 1024 {
            return None;
        }
        let records = consume(&b, "table");
        (records.len() < 2_000).then_some(records)
    });
    assert_eq!(records.last().unwrap().0, 19_999, "offsets never change");
    check_compacted(&records, &latest);
}

#[test]
fn a_record_without_a_key_is_refused_with_invalid_record_on_a_compacted_topic() {
    let (weir, _data) = start(&[]);
    let b = weir.bootstrap();
    create_topic(&b, "keyed-only", &[("cleanup.policy", "compact")]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let keyless = producer
        .send_result(FutureRecord::<(), _>::to("keyed-only").payload("no key"))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    match block_on(keyless).expect("delivery report") {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::InvalidRecord)
        }
        other => panic!("a keyless record was not refused: {other:?}"),
    }
    let keyed = producer
        .send_result(FutureRecord::to("keyed-only").key("k").payload("v"))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    let delivery = block_on(keyed)
        .expect("delivery report")
        .expect("a keyed record is stored");
    assert_eq!((delivery.partition, delivery.offset), (0, 0));
}

/// KIP-467: Kafka refuses the whole batch but names the keyless records in `record_errors`,
/// so librdkafka fails exactly those with INVALID_RECORD and the batch's keyed records with
/// `_INVALID_DIFFERENT_RECORD` (librdkafka's own 0011 test checks these counts).
#[test]
fn only_the_keyless_records_of_a_batch_fail_with_invalid_record_on_a_compacted_topic() {
    let (weir, _data) = start(&[]);
    let b = weir.bootstrap();
    create_topic(&b, "keyed-batch", &[("cleanup.policy", "compact")]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("linger.ms", "500")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    // One batch of 10 records, every third keyless.
    let deliveries: Vec<_> = (0..10)
        .map(|i| {
            let key = format!("k{i}");
            let value = format!("v{i}");
            let mut record = FutureRecord::to("keyed-batch").payload(&value).partition(0);
            if i % 3 != 0 {
                record = record.key(&key);
            }
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    let codes: Vec<RDKafkaErrorCode> = deliveries
        .into_iter()
        .map(|d| match block_on(d).expect("delivery report") {
            Err((KafkaError::MessageProduction(code), _)) => code,
            other => panic!("the batch was not refused: {other:?}"),
        })
        .collect();
    let expected: Vec<RDKafkaErrorCode> = (0..10)
        .map(|i| {
            if i % 3 == 0 {
                RDKafkaErrorCode::InvalidRecord
            } else {
                RDKafkaErrorCode::InvalidDifferentRecord
            }
        })
        .collect();
    assert_eq!(codes, expected);
}

#[test]
fn tombstones_disappear_after_delete_retention_ms() {
    let (weir, data) = start(&[]);
    let b = weir.bootstrap();
    create_topic(
        &b,
        "deletes",
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("delete.retention.ms", "1000"),
        ],
    );
    let mut lines: Vec<String> = (0..2_000).map(|i| format!("k{}:v{i}", i % 20)).collect();
    lines.push("k3:".into());
    lines.push("k7:".into());
    // Unique keys after the tombstones, so their segment closes and gets cleaned.
    lines.extend((2_002..3_000).map(|i| format!("filler-{i}:v{i}")));
    produce(&b, "deletes", &lines);
    let records = wait_until("the tombstones and their keys to go", PATIENCE, || {
        let records = consume(&b, "deletes");
        let gone = !records.iter().any(|(_, k, _)| k == "k3" || k == "k7");
        let compacted = records.iter().filter(|(_, k, _)| k == "k1").count() == 1;
        (gone && compacted).then_some(records)
    });
    let latest: BTreeMap<String, String> = (1_980..2_000)
        .filter(|i| i % 20 != 3 && i % 20 != 7)
        .map(|i| (format!("k{}", i % 20), format!("v{i}")))
        .collect();
    check_compacted(&records, &latest);
    assert!(log_bytes(data.path(), "deletes") > 0);
}

#[test]
fn consumer_offsets_stay_bounded_under_a_group_committing_in_a_loop() {
    let (weir, data) = start(&[
        "offsets.topic.num.partitions=1",
        "offsets.topic.segment.bytes=8192",
    ]);
    let b = weir.bootstrap();
    create_topic(&b, "commits", &[]);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "looper")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let bound = 48 * 1024;
    let mut offset = 0i64;
    for round in 0..5 {
        for _ in 0..1_000 {
            offset += 1;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("commits", 0, Offset::Offset(offset))
                .unwrap();
            consumer.commit(&tpl, CommitMode::Sync).expect("commit");
        }
        // 1000 commits write far more than the bound; compaction brings it back down.
        wait_until(
            &format!("__consumer_offsets to shrink after round {round}"),
            PATIENCE,
            || (log_bytes(data.path(), "__consumer_offsets") < bound).then_some(()),
        );
    }
    // The group's coordinator reloads its offsets from the compacted log after a restart.
    drop(consumer);
    let mut weir = weir;
    weir.kill9();
    weir.restart();
    let committed = wait_until("the group's offsets after a restart", PATIENCE, || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", weir.bootstrap())
            .set("group.id", "looper")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("commits", 0);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .ok()?;
        committed.find_partition("commits", 0).map(|e| e.offset())
    });
    assert_eq!(
        committed,
        Offset::Offset(offset),
        "the latest commit survives compaction"
    );
}

#[test]
fn with_compact_delete_retention_still_applies() {
    let (weir, _data) = start(&[]);
    let b = weir.bootstrap();
    create_topic(
        &b,
        "both",
        &[
            ("cleanup.policy", "compact,delete"),
            ("segment.bytes", "4096"),
            ("retention.ms", "600000"),
        ],
    );
    // Unique keys (nothing to compact) stamped an hour ago: older than retention.ms.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("linger.ms", "1")
        .set("batch.num.messages", "50")
        .create()
        .expect("producer");
    let hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let sends: Vec<_> = (0..1_000)
        .map(|i| {
            let key = format!("key-{i}");
            let value = format!("v{i}");
            producer
                .send_result(
                    FutureRecord::to("both")
                        .key(&key)
                        .payload(&value)
                        .timestamp(hour_ago),
                )
                .map_err(|(e, _)| e)
        })
        .collect();
    for send in sends {
        block_on(send.expect("enqueue"))
            .expect("delivery")
            .expect("acknowledged");
    }
    let (low, high) = wait_until("retention to delete the old segments", PATIENCE, || {
        let (low, high) = producer_watermarks(&b);
        (low == high && high == 1_000).then_some((low, high))
    });
    assert_eq!((low, high), (1_000, 1_000));
}

fn producer_watermarks(bootstrap: &str) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks("both", 0, Duration::from_secs(10))
        .expect("watermarks")
}

#[test]
fn a_compacted_topic_keeps_its_latest_values_across_kill_9() {
    let (mut weir, data) = start(&[]);
    let b = weir.bootstrap();
    create_topic(
        &b,
        "durable-table",
        &[("cleanup.policy", "compact"), ("segment.bytes", "4096")],
    );
    let lines: Vec<String> = (0..5_000).map(|i| format!("key-{}:v{i}", i % 50)).collect();
    produce(&b, "durable-table", &lines);
    wait_until("the partition to shrink", PATIENCE, || {
        (log_bytes(data.path(), "durable-table") < 24 * 1024).then_some(())
    });
    weir.kill9();
    weir.restart();
    let latest: BTreeMap<String, String> = (4_950..5_000)
        .map(|i| (format!("key-{}", i % 50), format!("v{i}")))
        .collect();
    let records = consume(&weir.bootstrap(), "durable-table");
    check_compacted(&records, &latest);
    assert_eq!(records.last().unwrap().0, 4_999);
}
