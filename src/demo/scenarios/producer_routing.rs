//! Cases 5–6: a producer bootstraps from any broker, learns the leaders from that broker's
//! cache, picks the partition from the key, and writes to the leader directly; with stale
//! metadata it gets NOT_LEADER_OR_FOLLOWER, refreshes, and retries. The controller and the
//! coordination service take no part.

use futures::future::LocalBoxFuture;

use super::super::client::java_partition;
use super::super::{Demo, Stage};
use super::keyed;

pub const DEMO: Demo = Demo {
    name: "producer-routing",
    title: "How producers find the leader",
    seed: "Cases 5–6",
    sets: &[],
    trace_from_start: false,
    expect: &[
        "client:producer -> @bootstrap : Metadata*",
        "@bootstrap -> client:producer : Metadata*leaders*",
        "client:producer -> @follower : Produce orders-*",
        "@follower -> client:producer : Produce*NOT_LEADER_OR_FOLLOWER",
        "client:producer -> @bootstrap : Metadata*",
        "client:producer -> @leader : Produce orders-*",
        "@leader -> client:producer : Produce*offset 0*ok",
    ],
    hide: &[],
    run,
};

fn run(stage: &mut Stage) -> LocalBoxFuture<'_, anyhow::Result<()>> {
    Box::pin(script(stage))
}

async fn script(s: &mut Stage) -> anyhow::Result<()> {
    let controller = s.controller().await?;
    s.create_topic("orders", 3, None).await?;
    let bootstrap = 1;
    s.role("bootstrap", bootstrap);
    s.role("controller", controller);
    s.start_trace()?;
    let mut producer = s.client(bootstrap, "producer").await?;
    let leaders = producer.leaders("orders").await?;
    let shown: Vec<String> = leaders
        .iter()
        .map(|(p, l)| format!("orders-{p} → broker {l}"))
        .collect();
    s.say(format!(
        "Step 5.1–5.3: the producer's bootstrap.servers lists ordinary brokers; it sent \
         Metadata(orders) to broker {bootstrap}, which answered from its in-memory cache: {}. \
         No coordination service, no controller.",
        shown.join(", ")
    ));
    let key = "customer-42";
    let p = java_partition(key.as_bytes(), 3);
    let leader = leaders
        .iter()
        .find(|(q, _)| *q == p)
        .map(|(_, l)| *l)
        .ok_or_else(|| anyhow::anyhow!("no leader for orders-{p}"))?;
    let follower = (1..=3).find(|b| *b != leader).unwrap_or(1);
    s.role("leader", leader);
    s.role("follower", follower);
    s.say(format!(
        "Step 5.4: the record's key `{key}` picks partition {p}: toPositive(murmur2(key)) % 3, \
         the Java client's default partitioner (the seed's hash(key) % partitions)."
    ));
    let mut stale = s.client(follower, "producer").await?;
    let r = stale
        .produce("orders", p, -1, &[keyed(key, "order placed")], 10_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(
        r.error_code == super::super::client::code::NOT_LEADER_OR_FOLLOWER,
        "a follower answered {}",
        r.error_code
    );
    s.say(format!(
        "A producer with stale metadata sends it to broker {follower}, which only follows \
         orders-{p}: NOT_LEADER_OR_FOLLOWER, nothing written (Case 4.6's client side)."
    ));
    producer.metadata(&["orders"]).await?;
    let mut direct = s.client(leader, "producer").await?;
    let r = direct
        .produce("orders", p, -1, &[keyed(key, "order placed")], 10_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(r.error_code == 0, "the leader answered {}", r.error_code);
    s.say(format!(
        "It refreshed its metadata and retried directly to the leader, broker {leader}: \
         offset {} (Step 5.5: no indirection).",
        r.base_offset
    ));
    s.say(format!(
        "Case 6: the controller (broker {controller}) took no part as controller: the client's \
         requests went to the brokers the metadata named, like any client's; the only \
         inter-broker traffic meanwhile is the followers fetching from the leaders."
    ));
    s.kafka(
        "Partitioning is the client's choice: Java clients hash keys with murmur2, librdkafka \
         defaults to consistent_random (CRC32 of the key), and keyless records go to a sticky \
         partition (KIP-480).",
    );
    s.kafka(
        "On NOT_LEADER_OR_FOLLOWER a client refreshes metadata and retries (retries, \
         retry.backoff.ms); with idempotence on (the default since Kafka 3.0) the retry cannot \
         duplicate the record.",
    );
    Ok(())
}
