//! `weir cluster --set zookeeper.connect=...`: the in-process brokers run on an external
//! coordination service (a real ZooKeeper 3.8, or the `weir coordinator` binary) instead of the
//! embedded one, register there as Kafka does, elect a controller there, and disappear from it
//! when the process dies without a word (their sessions expire).

use std::time::Duration;

use crate::kafka_clients::Weir;
use crate::support::wait_until_async;

use super::harness::{Kind, Service};

async fn brokers_run_on(kind: Kind) {
    let service = Service::start(kind).await;
    let connect = format!(
        "zookeeper.connect={}",
        service.connect_string(service.port())
    );
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let mut weir = tokio::task::spawn_blocking(move || {
        Weir::start_in(2, 0, &dir, &[&connect, "zookeeper.session.timeout.ms=2000"])
    })
    .await
    .unwrap();

    let (observer, _) = service.client(Duration::from_secs(4)).await;
    assert_eq!(
        observer.get_children("/brokers/ids", false).await.unwrap(),
        vec!["1", "2"]
    );
    let (controller, stat) = observer.get_data("/controller", false).await.unwrap();
    let controller = String::from_utf8(controller).unwrap();
    assert!(
        controller.contains("\"brokerid\":1") || controller.contains("\"brokerid\":2"),
        "{controller}"
    );
    assert_ne!(stat.ephemeral_owner, 0, "/controller is ephemeral");
    // Brokers and clients agree on the controller the service recorded.
    let brokers = weir.bootstrap();
    let metadata = tokio::task::spawn_blocking(move || {
        crate::kafka_clients::run_with_deadline(
            std::process::Command::new("kcat").args(["-b", &brokers, "-L"]),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let listing = String::from_utf8_lossy(&metadata.stdout).to_string();
    assert_eq!(listing.matches("(controller)").count(), 1, "{listing}");

    // kill -9: nobody deregisters; the service notices the silence.
    weir.kill9();
    wait_until_async(
        "the dead brokers' registrations to expire",
        Duration::from_secs(30),
        || async {
            let ids = observer.get_children("/brokers/ids", false).await.ok()?;
            let controller = observer.exists("/controller", false).await.ok()?;
            (ids.is_empty() && controller.is_none()).then_some(())
        },
    )
    .await;
    observer.close().await.unwrap();
}

#[actix::test]
async fn weir_cluster_brokers_run_on_a_real_zookeeper() {
    brokers_run_on(Kind::ZooKeeper).await;
}

#[actix::test]
async fn weir_cluster_brokers_run_on_a_weir_coordinator() {
    brokers_run_on(Kind::Binary).await;
}

/// ZooKeeper drops a connection whose request exceeds `jute.maxbuffer` (1 MiB): one multi
/// holding every partition's state of a topic this wide (about 250 bytes a partition) was
/// refused and CreateTopics failed (checked: 4 500 partitions failed, 3 000 did not). The
/// controller writes the states as Kafka's does, one fenced request per partition, pipelined.
#[actix::test]
async fn a_topic_too_wide_for_one_zookeeper_request_is_created_on_a_real_zookeeper() {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

    const PARTITIONS: i32 = 4_500;
    let service = Service::start(Kind::ZooKeeper).await;
    let connect = format!(
        "zookeeper.connect={}",
        service.connect_string(service.port())
    );
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let weir = tokio::task::spawn_blocking(move || Weir::start_in(1, 0, &dir, &[&connect]))
        .await
        .unwrap();
    let admin = crate::kafka_clients::rdkafka_client::admin(&weir.bootstrap());
    let created = admin
        .create_topics(
            &[NewTopic::new(
                "wide",
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(60))),
        )
        .await
        .expect("CreateTopics answered");
    assert!(
        matches!(created.as_slice(), [Ok(_)]),
        "CreateTopics: {created:?}"
    );

    let (observer, _) = service.client(Duration::from_secs(4)).await;
    let partitions = observer
        .get_children("/brokers/topics/wide/partitions", false)
        .await
        .unwrap();
    assert_eq!(partitions.len(), PARTITIONS as usize);
    for p in [0, PARTITIONS / 2, PARTITIONS - 1] {
        let (state, _) = observer
            .get_data(&format!("/brokers/topics/wide/partitions/{p}/state"), false)
            .await
            .unwrap();
        let state = String::from_utf8(state).unwrap();
        assert!(state.contains("\"leader\":1"), "partition {p}: {state}");
    }
    observer.close().await.unwrap();
}
