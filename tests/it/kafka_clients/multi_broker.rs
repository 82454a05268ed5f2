//! A 3-broker `weir cluster`: partitions spread over the brokers, and a client that produces
//! to every partition (following each partition to its leader) reads everything back.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::rdkafka_client::round_trip;
use super::Weir;

#[test]
fn a_three_broker_cluster_spreads_partitions_and_serves_them_all() {
    let weir = Weir::start(3);
    assert_eq!(weir.brokers.len(), 3);
    // Any broker bootstraps the whole cluster.
    let bootstrap = weir.brokers[2].clone();
    round_trip(&bootstrap, "spread", "all", 6);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some("spread"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(md.brokers().len(), 3);
    let topic = &md.topics()[0];
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    for p in topic.partitions() {
        *leaders.entry(p.leader()).or_default() += 1;
    }
    assert_eq!(
        leaders.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "leaders {leaders:?}"
    );
}

/// Partition 0 of `topic` as `broker`'s Metadata (v9) reports it: (leader, leader epoch), and
/// the controller id.
fn metadata_of(broker: &str, topic: &str) -> ((i32, i32), i32) {
    use kafka_protocol::messages::{metadata_request, ApiKey, MetadataRequest, MetadataResponse};
    let mut conn = super::versions::Conn::new(broker);
    let response: MetadataResponse = conn.call(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(super::versions::name(topic)))])),
    );
    let p0 = response.topics[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)
        .expect("partition 0");
    ((p0.leader_id.0, p0.leader_epoch), response.controller_id.0)
}

/// [control-plane] with real clients: admin requests through a broker that is not the
/// controller, then Metadata from every surviving broker after the leader of partition 0
/// crashes (a new leader, a higher leader epoch) and after the controller crashes (a new
/// controller id).
#[test]
fn admin_goes_through_any_broker_and_every_broker_reports_failovers() {
    use crate::support::wait_until;
    let mut weir = Weir::start_with(3, &["zookeeper.session.timeout.ms=3000"]);
    let controller = weir.status()["controller"].as_i64().expect("controller") as i32;
    let other = (1..=3).find(|b| *b != controller).unwrap();
    let via = weir.brokers[other as usize - 1].clone();
    super::python(
        "confluent_kafka_client.py",
        &["cluster-admin", &via, "create"],
        Duration::from_secs(120),
    );
    let listing = super::kcat::kcat(&["-b", &via, "-L", "-t", "cp-admin"], None);
    assert!(
        listing.contains("with 8 partitions") && listing.contains("(controller)"),
        "{listing}"
    );

    let ((leader, epoch), _) = metadata_of(&via, "cp-admin");
    assert_eq!(
        weir.console(&format!("crash {leader}")),
        format!("ok crash {leader}")
    );
    let survivors: Vec<String> = (1..=3)
        .filter(|b| *b != leader)
        .map(|b| weir.brokers[b as usize - 1].clone())
        .collect();
    for broker in &survivors {
        wait_until(
            "a new leader of partition 0",
            Duration::from_secs(20),
            || {
                let ((now, now_epoch), _) = metadata_of(broker, "cp-admin");
                (now >= 0 && now != leader && now_epoch > epoch).then_some(())
            },
        );
    }

    let ((_, _), controller) = metadata_of(&survivors[0], "cp-admin");
    if controller != leader {
        assert_eq!(
            weir.console(&format!("crash {controller}")),
            format!("ok crash {controller}")
        );
    }
    let last = (1..=3)
        .find(|b| *b != leader && *b != controller)
        .expect("one broker left");
    let last_addr = weir.brokers[last as usize - 1].clone();
    wait_until("a new controller", Duration::from_secs(20), || {
        let (_, now) = metadata_of(&last_addr, "cp-admin");
        (now == last).then_some(())
    });
    // The last broker standing is controller and takes admin requests itself.
    super::python(
        "confluent_kafka_client.py",
        &["cluster-admin", &last_addr, "delete"],
        Duration::from_secs(120),
    );
}

/// ListPartitionReassignments as ZooKeeper-mode Kafka answers it: the controller lists the
/// reassignments in progress (weir never reassigns, so none), every other broker answers
/// NOT_CONTROLLER so the admin client goes to the controller (KafkaJS's
/// `admin.listPartitionReassignments` does).
#[test]
fn only_the_controller_lists_partition_reassignments_and_none_are_in_progress() {
    use kafka_protocol::messages::list_partition_reassignments_request as lr;
    use kafka_protocol::messages::{
        ApiKey, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    let weir = Weir::start(3);
    super::rdkafka_client::create_topic(&weir.bootstrap(), "moving", 2);
    let (_, controller) = metadata_of(&weir.brokers[0], "moving");
    let request = ListPartitionReassignmentsRequest::default().with_topics(Some(vec![
        lr::ListPartitionReassignmentsTopics::default()
            .with_name(super::versions::name("moving"))
            .with_partition_indexes(vec![0, 1]),
    ]));
    for (i, broker) in weir.brokers.iter().enumerate() {
        let mut conn = super::versions::Conn::new(broker);
        let response: ListPartitionReassignmentsResponse =
            conn.call(ApiKey::ListPartitionReassignments, 0, &request);
        if i as i32 + 1 == controller {
            assert_eq!(
                response.error_code, 0,
                "the controller, broker {controller}"
            );
            assert!(response.topics.is_empty(), "{response:?}");
        } else {
            assert_eq!(
                response.error_code,
                41,
                "NOT_CONTROLLER from broker {}",
                i + 1
            );
        }
    }
}
