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
