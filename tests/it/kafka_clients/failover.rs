//! [replication] with a real client on `weir cluster`: a confluent-kafka idempotent producer
//! (acks=all) writes 200 000 records to a 6-partition topic with replication factor 3 and
//! `min.insync.replicas=2` while the leader of partition 0 is crashed and later restarted
//! through the fault console. The client recovers by itself (NOT_LEADER_OR_FOLLOWER, a
//! metadata refresh, retries with the same sequences); afterwards every acknowledged record
//! is there exactly once, in order per partition, and the three replicas of every partition
//! hold the same bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{client_script, python, Weir};
use crate::support::wait_until;

const TOPIC: &str = "ck-failover";
const PARTITIONS: usize = 6;
const LIMIT: Duration = Duration::from_secs(240);

fn acknowledged(ack_file: &Path) -> usize {
    std::fs::read_to_string(ack_file)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The partition's log on one broker, every segment in offset order.
fn log_bytes(data: &Path, broker: usize, partition: usize) -> Vec<u8> {
    let dir = data
        .join(format!("broker-{broker}"))
        .join(format!("{TOPIC}-{partition}"));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| std::fs::read(p).expect("segment"))
        .collect()
}

fn partition_states(weir: &mut Weir) -> Vec<serde_json::Value> {
    weir.status()["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["topic"] == TOPIC)
        .cloned()
        .collect()
}

#[test]
fn acknowledged_records_survive_a_leader_crash_exactly_once_with_confluent_kafka() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut weir = Weir::start_in(3, 0, data.path(), &["zookeeper.session.timeout.ms=3000"]);
    let bootstrap = weir.bootstrap();
    let acks = data.path().join("acks");
    let mut producer = Command::new("python3")
        .arg(client_script("confluent_kafka_client.py"))
        .args(["failover", &bootstrap, &acks.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the producer");
    let still_producing = |producer: &mut std::process::Child| {
        if let Ok(Some(status)) = producer.try_wait() {
            panic!("the producer stopped early: {status}");
        }
    };

    wait_until("40 000 acknowledgements", LIMIT, || {
        still_producing(&mut producer);
        (acknowledged(&acks) >= 40_000).then_some(())
    });
    let leader = partition_states(&mut weir)
        .iter()
        .find(|p| p["partition"] == 0)
        .and_then(|p| p["leader"].as_i64())
        .expect("partition 0 has a leader");
    assert_eq!(
        weir.console(&format!("crash {leader}")),
        format!("ok crash {leader}")
    );

    wait_until("120 000 acknowledgements", LIMIT, || {
        still_producing(&mut producer);
        (acknowledged(&acks) >= 120_000).then_some(())
    });
    let moved = partition_states(&mut weir);
    let p0 = moved.iter().find(|p| p["partition"] == 0).unwrap();
    assert_ne!(
        p0["leader"].as_i64(),
        Some(leader),
        "partition 0 moved: {p0}"
    );
    assert_eq!(
        weir.console(&format!("restart {leader}")),
        format!("ok restart {leader}")
    );

    let output = producer.wait_with_output().expect("producer output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("idempotent produced 200000"),
        "producer failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    python(
        "confluent_kafka_client.py",
        &["verify-failover", &bootstrap, &acks.display().to_string()],
        LIMIT,
    );

    // Once every replica is back in sync, all three hold the same bytes.
    wait_until("every partition fully in sync", LIMIT, || {
        let states = partition_states(&mut weir);
        (states.len() == PARTITIONS
            && states.iter().all(|p| {
                p["isr"].as_array().map(Vec::len) == Some(3)
                    && p["high_watermark"] == p["log_end_offset"]
            }))
        .then_some(())
    });
    assert!(weir.terminate().success(), "clean shutdown");
    for partition in 0..PARTITIONS {
        let first = log_bytes(data.path(), 1, partition);
        assert!(!first.is_empty());
        for broker in 2..=3 {
            assert!(
                log_bytes(data.path(), broker, partition) == first,
                "partition {partition}: broker {broker}'s log differs from broker 1's"
            );
        }
    }
}

/// The broker coordinating `group` (FindCoordinator v1), once it is not `except`.
fn coordinator_of(bootstrap: &str, group: &str, except: i32) -> i32 {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    wait_until("the group's coordinator", Duration::from_secs(30), || {
        let first = bootstrap.split(',').next().expect("a broker");
        let mut conn = super::versions::Conn::new(first);
        let response: FindCoordinatorResponse = conn.call(
            ApiKey::FindCoordinator,
            1,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.into())),
        );
        (response.error_code == 0 && response.node_id.0 != except).then_some(response.node_id.0)
    })
}

#[test]
fn a_group_finds_its_new_coordinator_with_its_commits_intact_after_the_old_one_crashes() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut weir = Weir::start_in(
        3,
        0,
        data.path(),
        &[
            "zookeeper.session.timeout.ms=3000",
            "group.initial.rebalance.delay.ms=0",
        ],
    );
    let bootstrap = weir.bootstrap();
    let out = python("groups_client.py", &["failover_commit", &bootstrap], LIMIT);
    let committed = out
        .lines()
        .find_map(|l| l.strip_prefix("COMMITTED "))
        .expect("the committed offsets")
        .to_string();

    let coordinator = coordinator_of(&bootstrap, "failover-group", -1);
    assert_eq!(
        weir.console(&format!("crash {coordinator}")),
        format!("ok crash {coordinator}")
    );
    let survivors: Vec<String> = weir
        .brokers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as i32 + 1 != coordinator)
        .map(|(_, b)| b.clone())
        .collect();
    let bootstrap = survivors.join(",");
    // Once the crashed broker's session expires, a survivor leads its offsets partition.
    coordinator_of(&bootstrap, "failover-group", coordinator);
    python(
        "groups_client.py",
        &["failover_resume", &bootstrap, &committed],
        LIMIT,
    );
}
