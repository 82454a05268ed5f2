//! Integration tests: `weir broker` processes registering with a real ZooKeeper or a
//! `weir coordinator`, electing a controller, creating topics through it, and serving Kafka
//! clients; what they write is Kafka's layout, readable with ZooKeeper's own CLI.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::coordination::harness::{start_binary, start_zookeeper};
use crate::multinode::{zk_get, BrokerProcess};
use crate::support::{free_port, require_program};

/// Starts `weir broker` with `sets` and waits for its `ready` line.
fn start_broker(sets: &[String]) -> BrokerProcess {
    let mut broker = BrokerProcess::new(sets.to_vec(), vec![]);
    broker.start();
    broker
}

fn kcat(args: &[&str]) -> String {
    require_program("kcat");
    let out = crate::kafka_clients::run_with_deadline(
        Command::new("kcat").args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn broker_sets(zookeeper_connect: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut sets = vec![
        format!("zookeeper.connect={zookeeper_connect}"),
        format!("listeners=PLAINTEXT://127.0.0.1:{}", free_port()),
        format!("log.dirs={}", dir.display()),
        "zookeeper.session.timeout.ms=4000".to_string(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets
}

fn produce_and_consume(addr: &str, topic: &str, dir: &Path) {
    let input = dir.join(format!("{topic}.txt"));
    std::fs::write(&input, "one\ntwo\nthree\n").unwrap();
    kcat(&["-b", addr, "-P", "-t", topic, "-l", input.to_str().unwrap()]);
    let got = kcat(&["-b", addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q"]);
    assert_eq!(got.lines().collect::<Vec<_>>(), ["one", "two", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_broker_on_real_zookeeper_writes_kafkas_znodes_and_serves_clients() {
    let dir = tempfile::tempdir().unwrap();
    let zk_port = free_port();
    let _zk = start_zookeeper(zk_port, dir.path());
    let logs = dir.path().join("logs");
    let connect = format!("127.0.0.1:{zk_port}/kafka");
    let broker = start_broker(&broker_sets(&connect, &logs, &[]));
    assert!(
        broker.id > 1000,
        "broker.id=-1 generates an id above reserved.broker.max.id"
    );
    produce_and_consume(&broker.client, "orders", dir.path());

    // Case 1 and 3 in Kafka's own layout, as ZooKeeper's CLI shows it.
    let registration = zk_get(zk_port, &format!("/kafka/brokers/ids/{}", broker.id));
    assert_eq!(registration["version"], 5);
    assert_eq!(
        registration["endpoints"][0],
        format!("PLAINTEXT://{}", broker.client)
    );
    let controller = zk_get(zk_port, "/kafka/controller");
    assert_eq!(controller["brokerid"], broker.id);
    let state = zk_get(zk_port, "/kafka/brokers/topics/orders/partitions/0/state");
    assert_eq!(state["leader"], broker.id);
    assert_eq!(state["isr"][0], broker.id);
    assert_eq!(state["leader_epoch"], 0);

    // The generated id is kept in meta.properties: a restart comes back as the same broker
    // with its data.
    let id = broker.id;
    drop(broker);
    let broker = start_broker(&broker_sets(&connect, &logs, &[]));
    assert_eq!(broker.id, id);
    let got = kcat(&[
        "-b",
        &broker.client,
        "-C",
        "-t",
        "orders",
        "-o",
        "beginning",
        "-e",
        "-q",
    ]);
    assert_eq!(got.lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_broker_on_a_weir_coordinator_serves_clients() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _coordinator = start_binary(port, &dir.path().join("coordination")).await;
    let broker = start_broker(&broker_sets(
        &format!("weir://127.0.0.1:{port}/weir"),
        &dir.path().join("logs"),
        &["broker.id=7"],
    ));
    assert_eq!(broker.id, 7);
    produce_and_consume(&broker.client, "payments", dir.path());
    let metadata = kcat(&["-b", &broker.client, "-L"]);
    assert!(
        metadata.contains("broker 7 at") && metadata.contains("(controller)"),
        "{metadata}"
    );
}

#[test]
fn weir_broker_without_zookeeper_connect_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["broker", "--set", "listeners=PLAINTEXT://127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("zookeeper.connect is required"));
}
