//! The rdkafka crate (librdkafka built from source) from Rust: FutureProducer and
//! BaseConsumer round trips, every codec, headers, nulls, timestamps, admin, and surviving a
//! kill -9 of the broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use super::Weir;
use crate::support::{free_port, wait_until};

const RECORDS: usize = 100_000;

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let results = block_on(admin(bootstrap).create_topics(
        &[NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(-1),
        )],
        &AdminOptions::new(),
    ))
    .expect("create topics");
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err(e) => panic!("creating {topic}: {e:?}"),
        }
    }
}

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .set("reconnect.backoff.max.ms", "500");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

fn key(i: usize) -> Option<Vec<u8>> {
    (i % 3 != 1).then(|| format!("key-{i:06}").into_bytes())
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("value-{i:06}-").into_bytes();
    v.extend((0..i % 40).map(|j| ((i * 7 + j) % 256) as u8));
    v
}

fn explicit_partition(i: usize, partitions: i32) -> Option<i32> {
    (i % 3 == 2).then_some(((i / 3) as i32) % partitions)
}

type Stored = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// A consumed record: offset, key, value, and the message itself (headers, timestamp).
pub type Consumed = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    rdkafka::message::OwnedMessage,
);

/// An acknowledged record: partition, offset, key.
type Acked = (i32, i64, Vec<u8>);

/// Produces `n` records (keyed, unkeyed, explicitly partitioned) and returns what the client
/// reported, per partition, in delivery order.
pub fn produce_mixed(
    bootstrap: &str,
    topic: &str,
    acks: &str,
    n: usize,
    partitions: i32,
) -> BTreeMap<i32, Vec<Stored>> {
    let producer = producer(bootstrap, &[("acks", acks)]);
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let k = key(i);
        let v = value(i);
        loop {
            let mut record = FutureRecord::to(topic).payload(&v);
            if let Some(k) = &k {
                record = record.key(k);
            }
            if let Some(p) = explicit_partition(i, partitions) {
                record = record.partition(p);
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let mut by_partition: BTreeMap<i32, Vec<Stored>> = BTreeMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let d = block_on(delivery)
            .expect("delivery reported")
            .unwrap_or_else(|(e, _)| panic!("record {i} failed: {e}"));
        if let Some(p) = explicit_partition(i, partitions) {
            assert_eq!(d.partition, p, "record {i} asked for partition {p}");
        }
        by_partition
            .entry(d.partition)
            .or_default()
            .push((d.offset, key(i), Some(value(i))));
    }
    by_partition
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-verify")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer")
}

/// Every record of `topic` from the beginning, per partition.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    total: usize,
) -> BTreeMap<i32, Vec<Consumed>> {
    let c = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while n < total && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.expect("consume");
            out.entry(m.partition()).or_default().push((
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                m.detach(),
            ));
            n += 1;
        }
    }
    assert_eq!(n, total, "read {n} of {total} records of {topic}");
    out
}

/// Same bytes, same order per partition, offsets from 0 (and the acknowledged ones).
fn verify(
    expected: &BTreeMap<i32, Vec<Stored>>,
    consumed: &BTreeMap<i32, Vec<Consumed>>,
    check_offsets: bool,
) {
    for (p, want) in expected {
        let got = consumed.get(p).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(got.len(), want.len(), "partition {p}");
        for (n, ((w_off, w_key, w_val), (g_off, g_key, g_val, _))) in
            want.iter().zip(got).enumerate()
        {
            assert_eq!(*g_off, n as i64, "partition {p}");
            if check_offsets {
                assert_eq!(w_off, g_off, "partition {p}: acknowledged offset");
            }
            assert_eq!(
                (w_key, w_val),
                (g_key, g_val),
                "partition {p} offset {g_off}"
            );
        }
    }
}

pub fn round_trip(bootstrap: &str, topic: &str, acks: &str, partitions: i32) {
    create_topic(bootstrap, topic, partitions);
    let expected = produce_mixed(bootstrap, topic, acks, RECORDS, partitions);
    let consumed = consume_all(bootstrap, topic, partitions, RECORDS);
    verify(&expected, &consumed, acks != "0");
}

#[test]
fn rdkafka_round_trips_100k_records_with_acks_0_1_and_all() {
    let weir = Weir::start(1);
    for acks in ["0", "1", "all"] {
        round_trip(&weir.bootstrap(), &format!("rd-acks-{acks}"), acks, 3);
    }
}

#[test]
fn rdkafka_reads_back_every_codec_headers_nulls_and_timestamps() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("rd-{codec}");
        create_topic(&b, &topic, 1);
        let producer = producer(&b, &[("compression.type", codec), ("linger.ms", "20")]);
        let deliveries: Vec<_> = (0..5_000)
            .map(|i| {
                let v = value(i).repeat(3);
                producer
                    .send_result(FutureRecord::<[u8], _>::to(&topic).payload(&v))
                    .map_err(|(e, _)| e)
                    .unwrap()
            })
            .collect();
        producer.flush(Duration::from_secs(30)).unwrap();
        for d in deliveries {
            block_on(d).unwrap().unwrap();
        }
        let got = consume_all(&b, &topic, 1, 5_000);
        for (i, (_, _, v, _)) in got[&0].iter().enumerate() {
            assert_eq!(
                v.as_deref(),
                Some(value(i).repeat(3).as_slice()),
                "{codec} record {i}"
            );
        }
    }

    create_topic(&b, "rd-features", 1);
    let producer = producer(&b, &[]);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "h1",
            value: Some("v1"),
        })
        .insert(Header::<&str> {
            key: "h2",
            value: None,
        });
    let base = 1_600_000_000_000i64;
    let mut deliveries = vec![
        producer
            .send_result(
                FutureRecord::to("rd-features")
                    .key("h")
                    .payload("with headers")
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap(),
        producer
            .send_result(FutureRecord::<[u8], [u8]>::to("rd-features"))
            .map_err(|(e, _)| e)
            .unwrap(),
    ];
    create_topic(&b, "rd-times", 1);
    for i in 0..10 {
        deliveries.push(
            producer
                .send_result(
                    FutureRecord::to("rd-times")
                        .key("t")
                        .payload("timed")
                        .timestamp(base + i * 1000),
                )
                .map_err(|(e, _)| e)
                .unwrap(),
        );
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    for d in deliveries {
        block_on(d).unwrap().unwrap();
    }
    let got = consume_all(&b, "rd-features", 1, 2);
    let with_headers = &got[&0][0].3;
    let h = with_headers.headers().expect("headers");
    assert_eq!(h.count(), 2);
    assert_eq!((h.get(0).key, h.get(0).value), ("h1", Some(&b"v1"[..])));
    assert_eq!((h.get(1).key, h.get(1).value), ("h2", None));
    assert_eq!(
        (got[&0][1].1.as_deref(), got[&0][1].2.as_deref()),
        (None, None)
    );

    let got = consume_all(&b, "rd-times", 1, 10);
    for (i, (_, _, _, m)) in got[&0].iter().enumerate() {
        assert_eq!(m.timestamp(), Timestamp::CreateTime(base + i as i64 * 1000));
    }
    let c = consumer(&b);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("rd-times", 0, Offset::Offset(base + 3_500))
        .unwrap();
    let found = c.offsets_for_times(tpl, Duration::from_secs(10)).unwrap();
    assert_eq!(found.elements()[0].offset(), Offset::Offset(4));
    let (low, high) = c
        .fetch_watermarks("rd-times", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 10));
}

#[test]
fn rdkafka_admin_creates_alters_describes_and_deletes_topics() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    let a = admin(&b);
    let opts = AdminOptions::new();
    let topic =
        NewTopic::new("rd-admin", 2, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let created = block_on(a.create_topics(&[topic], &opts)).unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let replicated = NewTopic::new("rd-replicated", 1, TopicReplication::Fixed(3));
    let refused = block_on(a.create_topics(&[replicated], &opts)).unwrap();
    assert!(
        matches!(
            refused[0],
            Err((_, RDKafkaErrorCode::InvalidReplicationFactor))
        ),
        "{refused:?}"
    );
    let described =
        block_on(a.describe_configs(&[ResourceSpecifier::Topic("rd-admin")], &opts)).unwrap();
    let resource = described[0].as_ref().unwrap();
    let entries = resource.entry_map();
    assert_eq!(entries["retention.ms"].value.as_deref(), Some("3600000"));
    assert!(!entries["retention.ms"].is_default);
    let alter = AlterConfig::new(ResourceSpecifier::Topic("rd-admin")).set("segment.ms", "7200000");
    let altered = block_on(a.alter_configs(&[alter], &opts)).unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let described =
        block_on(a.describe_configs(&[ResourceSpecifier::Topic("rd-admin")], &opts)).unwrap();
    let entries = described[0].as_ref().unwrap().entry_map();
    assert_eq!(entries["segment.ms"].value.as_deref(), Some("7200000"));
    // AlterConfigs replaces every override.
    assert!(entries["retention.ms"].is_default);
    let grown = block_on(a.create_partitions(&[NewPartitions::new("rd-admin", 4)], &opts)).unwrap();
    assert!(grown[0].is_ok(), "{grown:?}");
    let deleted = block_on(a.delete_topics(&["rd-admin"], &opts)).unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let c = consumer(&b);
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "rd-admin"));
}

#[test]
fn rdkafka_acks_survive_kill_9_and_the_producer_reconnects() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut weir = Weir::start_in(1, port, data.path(), &[]);
    let b = weir.bootstrap();
    create_topic(&b, "rd-survive", 3);
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let acked = acked.clone();
        let stop = stop.clone();
        let b = b.clone();
        std::thread::spawn(move || {
            let producer = producer(&b, &[("acks", "1"), ("message.timeout.ms", "120000")]);
            let mut i = 0usize;
            let mut pending = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                let k = format!("s{i}");
                match producer
                    .send_result(FutureRecord::to("rd-survive").key(&k).payload(&value(i)))
                {
                    Ok(d) => {
                        pending.push_back((k.into_bytes(), d));
                        i += 1;
                    }
                    Err(_) => producer.poll(Duration::from_millis(10)),
                }
                // Collect finished deliveries; block on the oldest only when many are pending.
                while let Some((_, d)) = pending.front_mut() {
                    let ready = futures::FutureExt::now_or_never(d);
                    let result = match ready {
                        Some(result) => result,
                        None if pending.len() > 1000 => {
                            block_on(&mut pending.front_mut().unwrap().1)
                        }
                        None => break,
                    };
                    let (k, _) = pending.pop_front().unwrap();
                    if let Ok(Ok(d)) = result {
                        acked.lock().unwrap().push((d.partition, d.offset, k));
                    }
                }
            }
            let _ = producer.flush(Duration::from_secs(60));
            for (k, d) in pending {
                if let Ok(Ok(d)) = block_on(d) {
                    acked.lock().unwrap().push((d.partition, d.offset, k));
                }
            }
        })
    };
    let count = || acked.lock().unwrap().len();
    wait_until(
        "acknowledgements before the kill",
        Duration::from_secs(60),
        || (count() >= 5_000).then_some(()),
    );
    weir.kill9();
    let at_kill = count();
    weir.restart();
    wait_until(
        "acknowledgements after the restart",
        Duration::from_secs(90),
        || (count() >= at_kill + 5_000).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    producing.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let c = consumer(&b);
    let total: i64 = (0..3)
        .map(|p| {
            c.fetch_watermarks("rd-survive", p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum();
    let consumed = consume_all(&b, "rd-survive", 3, total as usize);
    let mut index = std::collections::HashMap::new();
    for (p, recs) in &consumed {
        for (o, k, _, _) in recs {
            index.insert((*p, *o), k.clone());
        }
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(p, o, k)| index.get(&(*p, *o)) != Some(&Some(k.clone())))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(3)]
    );
}

/// `weir cluster`'s safe default (`min.insync.replicas=2`) does not make acks=all impossible
/// on a replication factor 1 topic, the shape most client test suites create: such a topic
/// records min.insync.replicas=1. A value the user sets keeps Kafka's meaning: NOT_ENOUGH_REPLICAS.
#[test]
fn an_rf_1_topic_takes_acks_all_under_the_clusters_safe_default_but_not_under_a_users_value() {
    let send_acks_all = |weir: &Weir, retries: &str| {
        let bootstrap = weir.bootstrap();
        let results = block_on(admin(&bootstrap).create_topics(
            &[NewTopic::new("single", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topics");
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        let producer = producer(
            &bootstrap,
            &[
                ("acks", "all"),
                ("message.timeout.ms", "5000"),
                ("retries", retries),
            ],
        );
        block_on(producer.send(
            FutureRecord::to("single").payload("v").key("k"),
            Duration::from_secs(5),
        ))
        .map(|_| ())
        .map_err(|(e, _)| e)
    };
    let weir = Weir::start(3);
    send_acks_all(&weir, "2147483647")
        .expect("acks=all on an RF 1 topic under the cluster's default");
    let resource = ResourceSpecifier::Topic("single");
    let described =
        block_on(admin(&weir.bootstrap()).describe_configs([&resource], &AdminOptions::new()))
            .expect("describe configs");
    let config = described[0].as_ref().expect("topic config");
    assert_eq!(
        config
            .get("min.insync.replicas")
            .and_then(|e| e.value.as_deref()),
        Some("1")
    );

    let strict = Weir::start_with(3, &["min.insync.replicas=2"]);
    // Not retried, so Kafka's error reaches the test rather than a timeout.
    let err = send_acks_all(&strict, "0").expect_err("acks=all with min.insync.replicas=2 set");
    assert_eq!(
        err,
        KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)
    );
}
