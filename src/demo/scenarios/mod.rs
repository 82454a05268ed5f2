//! The scenarios, one file each, in the seed's order. Each is a script over a [`Stage`]:
//! set the scene, start the trace, act as the seed's actors (admin, producer, consumers, the
//! fault console), wait for the cluster to react, and tell what happened.

use super::Demo;

mod acks;
mod broker_failure;
mod create_topic;
mod high_water_mark;
mod producer_routing;
mod rebalance;
mod startup;

pub static ALL: &[Demo] = &[
    startup::DEMO,
    create_topic::DEMO,
    broker_failure::DEMO,
    producer_routing::DEMO,
    high_water_mark::DEMO,
    acks::DEMO,
    rebalance::DEMO,
];

/// `[1,2,3]`.
pub(crate) fn ids(ids: &[i32]) -> String {
    let v: Vec<String> = ids.iter().map(i32::to_string).collect();
    format!("[{}]", v.join(","))
}

/// A record with a key.
pub(crate) fn keyed(key: &str, value: &str) -> (Option<bytes::Bytes>, bytes::Bytes) {
    (
        Some(bytes::Bytes::from(key.to_string())),
        bytes::Bytes::from(value.to_string()),
    )
}

/// A record without a key.
pub(crate) fn value(value: &str) -> (Option<bytes::Bytes>, bytes::Bytes) {
    (None, bytes::Bytes::from(value.to_string()))
}
