//! Replication on a real in-process cluster (every actor real, faults injected on the seam
//! between brokers): the ISR follows followers that stall and recover, `acks=all` refuses
//! what it cannot make durable, acknowledged records survive leader failovers, and an old
//! leader's unreplicated tail is truncated without ever having been visible (KIP-101).
//! A raw Kafka client ([`weir::demo::client`]) sends each request to the broker the test names and
//! sees the exact error codes.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use weir::actors::replica::{FetchIsolation, ReadRecords};
use weir::cluster::status::PartitionStatus;
use weir::cluster::Cluster;
use weir::transport::faults::Node;

use crate::support::wait_until_async;
use weir::demo::client::Client;

const DEADLINE: Duration = Duration::from_secs(30);

async fn start(brokers: u16, dir: &std::path::Path, sets: &[(&str, &str)]) -> Cluster {
    crate::support::init_test_logging();
    let mut builder = Cluster::builder()
        .brokers(brokers)
        .base_port(0)
        .data_dir(dir)
        .worker_threads(2);
    for (k, v) in sets {
        builder = builder.set(*k, *v);
    }
    builder.start().await.expect("cluster starts")
}

async fn client(cluster: &Cluster, broker: i32) -> Client {
    let addr = cluster.broker(broker).expect("broker").addr;
    Client::connect(addr, "replication-test")
        .await
        .expect("connect")
}

fn partition(cluster: &Cluster, topic: &str) -> Option<PartitionStatus> {
    cluster
        .status()
        .partitions
        .into_iter()
        .find(|p| p.topic == topic && p.partition == 0)
}

/// Waits until partition 0 of `topic` satisfies `f`, as the cluster reports it.
async fn wait_partition(
    cluster: &Cluster,
    topic: &str,
    what: &str,
    f: impl Fn(&PartitionStatus) -> bool,
) -> PartitionStatus {
    wait_until_async(what, DEADLINE, || {
        let p = partition(cluster, topic).filter(|p| f(p));
        async move { p }
    })
    .await
}

async fn create(cluster: &Cluster, topic: &str) -> PartitionStatus {
    let error = client(cluster, 1)
        .await
        .create_topic(topic, 1, 3, None)
        .await
        .expect("create topic");
    assert_eq!(error, 0, "creating {topic}");
    wait_partition(
        cluster,
        topic,
        "the topic has a leader and a full ISR",
        |p| p.leader >= 0 && p.isr.len() == 3,
    )
    .await
}

fn values(prefix: &str, n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("{prefix}-{i}")))
        .collect()
}

/// Produces `values` one record per request with `acks`, through `broker`; panics on any
/// error.
async fn produce_each(cluster: &Cluster, broker: i32, topic: &str, acks: i16, values: &[Bytes]) {
    let mut c = client(cluster, broker).await;
    for v in values {
        let produced = c
            .produce_values(topic, 0, acks, std::slice::from_ref(v), 10_000)
            .await
            .expect("produce");
        assert_eq!(produced.error_code, 0, "producing {v:?} to broker {broker}");
    }
}

/// The whole log of `topic`-0 on `broker`, as stored (batches with their offsets).
async fn stored_bytes(cluster: &Cluster, broker: i32, topic: &str) -> Bytes {
    let handle = cluster
        .broker(broker)
        .expect("broker")
        .shared
        .replicas
        .get(topic, 0)
        .expect("replica");
    handle
        .addr
        .send(ReadRecords {
            fetch_offset: 0,
            max_bytes: 64 << 20,
            min_one: true,
            isolation: FetchIsolation::LogEnd,
            current_leader_epoch: None,
        })
        .await
        .expect("replica alive")
        .records
}

/// Waits until every replica of `topic`-0 holds exactly the same bytes.
async fn wait_identical(cluster: &Cluster, topic: &str, replicas: &[i32]) {
    wait_until_async("every replica holds the same bytes", DEADLINE, || async {
        let mut logs = Vec::new();
        for r in replicas {
            logs.push(stored_bytes(cluster, *r, topic).await);
        }
        logs.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
}

#[actix::test]
async fn a_paused_follower_leaves_the_isr_and_rejoins_after_resume() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the follower still running never looks lagging on a loaded machine
    // (it would take the ISR below min.insync.replicas), short enough to wait out.
    let mut cluster = start(3, dir.path(), &[("replica.lag.time.max.ms", "1500")]).await;
    let p = create(&cluster, "paused").await;
    let controller = cluster.status().controller;
    let follower = *p
        .replicas
        .iter()
        .find(|r| **r != p.leader && **r != controller)
        .expect("a follower that is not the controller");
    cluster.pause(follower).await.unwrap();

    // The leader only notices a follower lagging when there is something to lag behind.
    let mut c = client(&cluster, p.leader).await;
    let mut sent = 0;
    let shrunk = loop {
        let produced = c
            .produce_values("paused", 0, -1, &values("a", 1), 10_000)
            .await
            .expect("produce");
        assert_eq!(produced.error_code, 0, "acks=all with 2 of 3 in sync");
        sent += 1;
        let now = partition(&cluster, "paused").unwrap();
        if !now.isr.contains(&follower) {
            break now;
        }
        assert!(sent < 1_000, "the paused follower never left the ISR");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shrunk.isr.len(), 2);
    assert_eq!(shrunk.leader, p.leader);

    cluster.resume(follower).await.unwrap();
    produce_each(&cluster, p.leader, "paused", -1, &values("b", 3)).await;
    wait_partition(&cluster, "paused", "the follower rejoins the ISR", |p| {
        p.isr.contains(&follower)
    })
    .await;
    wait_identical(&cluster, "paused", &p.replicas).await;
    cluster.shutdown().await.unwrap();
}

#[actix::test]
async fn a_broker_crashed_while_paused_restarts_and_rejoins_the_isr() {
    // Found by `weir chaos`: the crash left the pause on the seam, so the restarted broker
    // never got the controller's metadata.
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(3, dir.path(), &[("zookeeper.session.timeout.ms", "2000")]).await;
    let p = create(&cluster, "stopped-then-killed").await;
    let controller = cluster.status().controller;
    let victim = *p
        .replicas
        .iter()
        .find(|r| **r != controller)
        .expect("a replica that is not the controller");
    cluster.pause(victim).await.unwrap();
    cluster.crash(victim).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), cluster.restart(victim))
        .await
        .expect("the restart finishes")
        .expect("the restarted broker gets the cluster's metadata");
    wait_partition(
        &cluster,
        "stopped-then-killed",
        "the restarted broker rejoins the ISR",
        |s| s.isr.len() == 3,
    )
    .await;
    cluster.shutdown().await.unwrap();
}

#[actix::test]
async fn a_restart_that_fails_after_locking_its_log_dir_leaves_it_free_for_the_next() {
    // Found by `weir chaos`: a restart that failed late kept its log dir's `.lock` (and its
    // actors), so every later restart of that broker failed with "log dir in use".
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = crate::support::free_port();
    let mut cluster = start(
        1,
        dir.path(),
        &[
            ("zookeeper.session.timeout.ms", "2000"),
            ("metrics.port", &metrics_port.to_string()),
        ],
    )
    .await;
    cluster.crash(1).await.unwrap();
    // The restart binds the metrics port after locking its log dir: taken, it fails there.
    let taken = wait_until_async(
        "the crashed broker's metrics port is free",
        DEADLINE,
        || async { std::net::TcpListener::bind(("127.0.0.1", metrics_port)).ok() },
    )
    .await;
    let failed = tokio::time::timeout(DEADLINE, cluster.restart(1))
        .await
        .expect("the failed restart returns");
    let error = failed.expect_err("the metrics port is taken");
    assert!(error.contains("metrics.port"), "{error}");
    drop(taken);
    tokio::time::timeout(DEADLINE, cluster.restart(1))
        .await
        .expect("the restart finishes")
        .expect("the log dir is free again and the broker serves");
    let created = client(&cluster, 1)
        .await
        .create_topic("after-a-failed-restart", 1, 1, None)
        .await
        .expect("create topic");
    assert_eq!(created, 0);
    cluster.shutdown().await.unwrap();
}

#[actix::test]
async fn with_two_of_three_brokers_down_acks_all_is_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(3, dir.path(), &[("zookeeper.session.timeout.ms", "2000")]).await;
    let p = create(&cluster, "mir").await;
    produce_each(&cluster, p.leader, "mir", -1, &values("ok", 1)).await;
    let followers: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != p.leader)
        .collect();
    for f in &followers {
        cluster.crash(*f).await.unwrap();
    }
    let alone = wait_partition(&cluster, "mir", "the ISR shrinks to the leader", |s| {
        s.isr == vec![p.leader]
    })
    .await;
    assert_eq!(alone.leader, p.leader);

    let mut c = client(&cluster, p.leader).await;
    let refused = c
        .produce_values("mir", 0, -1, &values("no", 1), 5_000)
        .await
        .expect("produce");
    assert_eq!(refused.error_code, ResponseError::NotEnoughReplicas.code());
    assert_eq!(
        partition(&cluster, "mir").unwrap().log_end_offset,
        alone.log_end_offset,
        "nothing appended"
    );
    // acks=1 does not wait for the ISR.
    let accepted = c
        .produce_values("mir", 0, 1, &values("one", 1), 5_000)
        .await
        .expect("produce");
    assert_eq!(accepted.error_code, 0);

    for f in &followers {
        cluster.restart(*f).await.unwrap();
    }
    wait_partition(&cluster, "mir", "the ISR is whole again", |s| {
        s.isr.len() == 3
    })
    .await;
    produce_each(&cluster, p.leader, "mir", -1, &values("again", 1)).await;
    cluster.shutdown().await.unwrap();
}

#[actix::test]
async fn acknowledged_records_survive_two_leader_failovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(3, dir.path(), &[("zookeeper.session.timeout.ms", "2000")]).await;
    let p = create(&cluster, "survive").await;
    let mut acked = Vec::new();

    let first = values("first", 20);
    produce_each(&cluster, p.leader, "survive", -1, &first).await;
    acked.extend(first);
    cluster.crash(p.leader).await.unwrap();
    let second_leader = wait_partition(&cluster, "survive", "a new leader", |s| {
        s.leader >= 0 && s.leader != p.leader
    })
    .await
    .leader;

    let second = values("second", 20);
    produce_each(&cluster, second_leader, "survive", -1, &second).await;
    acked.extend(second);
    // The second leader dies right after acknowledging; the last replica standing leads,
    // alone, until the first leader comes back and catches up from it.
    cluster.crash(second_leader).await.unwrap();
    cluster.restart(p.leader).await.unwrap();
    let s = wait_partition(&cluster, "survive", "two replicas in sync again", |s| {
        s.leader >= 0 && s.leader != second_leader && s.isr.len() == 2
    })
    .await;
    let third = values("third", 20);
    produce_each(&cluster, s.leader, "survive", -1, &third).await;
    acked.extend(third);
    cluster.restart(second_leader).await.unwrap();
    let s = wait_partition(&cluster, "survive", "all three in sync", |s| {
        s.isr.len() == 3
    })
    .await;

    let (error, read) = client(&cluster, s.leader)
        .await
        .read_all("survive", 0, 0)
        .await
        .unwrap();
    assert_eq!(error, 0);
    let read: Vec<Bytes> = read.into_iter().map(|(_, v)| v).collect();
    assert_eq!(read, acked, "every acknowledged record, once, in order");
    wait_identical(&cluster, "survive", &p.replicas).await;
    cluster.shutdown().await.unwrap();
}

#[actix::test]
async fn an_old_leaders_unreplicated_tail_is_truncated_and_was_never_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(3, dir.path(), &[("zookeeper.session.timeout.ms", "2000")]).await;
    let p = create(&cluster, "diverge").await;
    let committed = values("committed", 10);
    produce_each(&cluster, p.leader, "diverge", -1, &committed).await;

    // The followers can no longer fetch from the leader (both ways: a fetch already parked
    // at the leader must not bring its answer back); it still takes acks=1 writes.
    let followers: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != p.leader)
        .collect();
    let faults = cluster.transport().faults().clone();
    for f in &followers {
        faults.cut_both(Node::Broker(*f), Node::Broker(p.leader));
    }
    produce_each(&cluster, p.leader, "diverge", 1, &values("unreplicated", 5)).await;
    let mut consumer = client(&cluster, p.leader).await;
    let beyond = consumer.fetch("diverge", 0, 10, 0).await.unwrap();
    assert_eq!(beyond.error_code, 0);
    assert!(
        beyond.records.is_empty(),
        "nothing past the high-water mark is served"
    );
    assert_eq!(beyond.high_watermark, 10);
    let (_, visible) = consumer.read_all("diverge", 0, 0).await.unwrap();
    assert_eq!(visible.len(), 10);

    cluster.crash(p.leader).await.unwrap();
    faults.heal_all();
    let s = wait_partition(&cluster, "diverge", "a follower takes over", |s| {
        s.leader >= 0 && s.leader != p.leader
    })
    .await;
    let after = values("after", 3);
    produce_each(&cluster, s.leader, "diverge", -1, &after).await;

    // The old leader returns: its tail (offsets 10–14, epoch 0) diverges from the new
    // leader's epoch 1, so it truncates to 10 and copies the new leader's records.
    cluster.restart(p.leader).await.unwrap();
    wait_partition(&cluster, "diverge", "the old leader rejoins the ISR", |s| {
        s.isr.contains(&p.leader)
    })
    .await;
    wait_identical(&cluster, "diverge", &p.replicas).await;
    let (error, read) = client(&cluster, s.leader)
        .await
        .read_all("diverge", 0, 0)
        .await
        .unwrap();
    assert_eq!(error, 0);
    let read: Vec<Bytes> = read.into_iter().map(|(_, v)| v).collect();
    let mut expected = committed;
    expected.extend(after);
    assert_eq!(read, expected);
    cluster.shutdown().await.unwrap();
}
