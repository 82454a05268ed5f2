//! Controller decisions, observed: winning the election, resigning, noticing brokers leave
//! and join, placing a new topic's replicas, and each partition state it decides (a leader
//! election, an ISR change), recorded as notes over the controller's broker before the
//! decision is written and sent.

use std::collections::{BTreeMap, BTreeSet};

use crate::actors::controller::context::{LeaderIsr, StateChange};
use crate::trace::event::{actor, Category, Event};
use crate::trace::{self};

fn ids(set: &BTreeSet<i32>) -> String {
    ids_of(&set.iter().copied().collect::<Vec<_>>())
}

fn ids_of(v: &[i32]) -> String {
    let v: Vec<String> = v.iter().map(i32::to_string).collect();
    format!("[{}]", v.join(","))
}

/// Broker `broker` won the `/controller` election with `epoch`.
#[inline]
pub fn elected(broker: i32, epoch: i32) {
    if trace::enabled() {
        let mut e = Event::note(
            Category::Controller,
            actor::broker(broker),
            "ControllerElected",
        );
        e.controller_epoch = Some(epoch);
        trace::emit(e);
    }
    crate::metrics::controller_changed(broker, true);
}

/// Broker `broker` stopped being the controller.
#[inline]
pub fn resigned(broker: i32) {
    if trace::enabled() {
        trace::emit(Event::note(
            Category::Controller,
            actor::broker(broker),
            "ControllerResigned",
        ));
    }
    crate::metrics::controller_changed(broker, false);
}

/// The controller saw brokers' registrations vanish (Case 4).
#[inline]
pub fn brokers_failed(controller: i32, dead: &BTreeSet<i32>) {
    if trace::enabled() {
        trace::emit(
            Event::note(
                Category::Controller,
                actor::broker(controller),
                "BrokersFailed",
            )
            .with_detail(ids(dead)),
        );
    }
}

/// The controller saw brokers register (Case 2).
#[inline]
pub fn brokers_joined(controller: i32, joined: &BTreeSet<i32>) {
    if trace::enabled() {
        trace::emit(
            Event::note(
                Category::Controller,
                actor::broker(controller),
                "BrokersJoined",
            )
            .with_detail(ids(joined)),
        );
    }
}

/// The controller placed a new topic's replicas (Case 3, Step 3.3).
#[inline]
pub fn placed(controller: i32, topic: &str, assignment: &BTreeMap<i32, Vec<i32>>) {
    if trace::enabled() {
        const SHOWN: usize = 6;
        let mut parts: Vec<String> = assignment
            .iter()
            .take(SHOWN)
            .map(|(p, r)| {
                let r: Vec<String> = r.iter().map(i32::to_string).collect();
                format!("{p}→[{}]", r.join(","))
            })
            .collect();
        if assignment.len() > SHOWN {
            parts.push(format!("… {} partitions", assignment.len()));
        }
        let mut e = Event::note(
            Category::Controller,
            actor::broker(controller),
            "PlaceReplicas",
        )
        .with_detail(parts.join(" "));
        e.topic = Some(topic.to_string());
        trace::emit(e);
    }
}

/// The controller decided new partition states (Case 4, Step 4.4: leader elections; ISR
/// changes), about to write them. `current` is its view before the decision.
#[inline]
pub fn decided(
    controller: i32,
    changes: &[StateChange],
    current: &BTreeMap<(String, i32), LeaderIsr>,
) {
    if trace::enabled() {
        for change in changes {
            let before = current.get(&(change.topic.clone(), change.partition));
            let kind = match before {
                None => "NewPartitionState",
                Some(b) if b.leader != change.state.leader => "ElectLeader",
                Some(b) if b.isr != change.state.isr => "ChangeIsr",
                Some(_) => "BumpLeaderEpoch",
            };
            let mut e = Event::note(Category::Controller, actor::broker(controller), kind)
                .with_partitions([(change.topic.as_str(), change.partition)]);
            e.leader = Some(change.state.leader);
            e.leader_epoch = Some(change.state.leader_epoch);
            e.isr = Some(change.state.isr.clone());
            match (kind, before) {
                ("ElectLeader", Some(b)) => e.detail = Some(format!("(was leader {})", b.leader)),
                ("ChangeIsr", Some(b)) => e.detail = Some(format!("(was ISR {})", ids_of(&b.isr))),
                _ => {}
            }
            trace::emit(e);
        }
    }
}
