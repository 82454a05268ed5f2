//! Steps 15.1–15.5: a record only the leader has is invisible to consumers; the high-water
//! mark moves once every ISR member has it.

use futures::future::LocalBoxFuture;

use super::super::{Demo, Stage};
use super::value;
use crate::cluster::faults::Fault;
use crate::transport::faults::Node;

pub const DEMO: Demo = Demo {
    name: "high-water-mark",
    title: "The high-water mark",
    seed: "Steps 15.1–15.5",
    // The follower retries a failed fetch soon, so the cut shows in the diagram.
    sets: &[("replica.fetch.backoff.ms", "200")],
    trace_from_start: false,
    expect: &[
        "console -> @follower : cut*",
        "client:producer -> @leader : Produce hwm-0*acks=1*",
        "@leader -> client:producer : Produce*offset 4*ok",
        "client:consumer -> @leader : Fetch hwm-0*offset 0*",
        "@leader -> client:consumer : Fetch*HWM 4*4 records*",
        "@follower : ReplicaFetch to b*: the link is cut",
        "console -> @follower : heal*",
        "@follower -> @leader : ReplicaFetch hwm-0*offset 4*",
        "@leader : HighWatermark hwm-0*HWM 5*",
        "client:consumer -> @leader : Fetch hwm-0*offset 4*",
        "@leader -> client:consumer : Fetch*HWM 5*1 record,*",
    ],
    hide: &[],
    run,
};

fn run(stage: &mut Stage) -> LocalBoxFuture<'_, anyhow::Result<()>> {
    Box::pin(script(stage))
}

async fn script(s: &mut Stage) -> anyhow::Result<()> {
    // The seed's example: P0 with ISR {B1 leader, B2 follower}.
    let (leader, follower) = (1, 2);
    s.create_topic("hwm", 1, Some(&[vec![leader, follower]]))
        .await?;
    let mut producer = s.client(leader, "producer").await?;
    for i in 0..4 {
        let r = producer
            .produce("hwm", 0, -1, &[value(&format!("m{i}"))], 10_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no answer"))?;
        anyhow::ensure!(r.error_code == 0);
    }
    s.wait_partition("hwm", 0, "HWM 4", |x| x.high_watermark == 4)
        .await?;
    s.role("leader", leader);
    s.role("follower", follower);
    s.start_trace()?;
    s.cluster
        .inject(Fault::Cut {
            from: Node::Broker(follower),
            to: Node::Broker(leader),
            both: true,
        })
        .await
        .map_err(anyhow::Error::msg)?;
    s.say(format!(
        "Step 15.1: partition hwm-0 has ISR {{B{leader} leader, B{follower} follower}} and both \
         hold offsets 0–3 (HWM 4). The link between them is cut (`cut {follower} {leader}`), so \
         the follower stays at [0][1][2][3]."
    ));
    let r = producer
        .produce("hwm", 0, 1, &[value("m4")], 10_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(r.error_code == 0 && r.base_offset == 4);
    s.say(
        "Record 4 arrives with acks=1: the leader appends it and acknowledges offset 4. \
         Leader: [0][1][2][3][4]; follower: [0][1][2][3].",
    );
    let mut consumer = s.client(leader, "consumer").await?;
    let before = consumer.fetch("hwm", 0, 0, 0).await?;
    anyhow::ensure!(
        before.high_watermark == 4 && before.records.len() == 4,
        "before the follower catches up a consumer sees HWM {} and {} records",
        before.high_watermark,
        before.records.len()
    );
    s.say(
        "Steps 15.2–15.4: a consumer reading from offset 0 gets offsets 0–3 and HWM 4; offset 4 \
         stays hidden although the leader has it, so no consumer can read a record a failover \
         to B2 would lose.",
    );
    // Let the cut last a moment: the follower's fetches fail and are retried meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    s.say(
        "While the link is cut the follower's fetches fail; its fetcher retries after \
         replica.fetch.backoff.ms (200 ms here).",
    );
    s.cluster
        .inject(Fault::Heal(Some((
            Node::Broker(follower),
            Node::Broker(leader),
        ))))
        .await
        .map_err(anyhow::Error::msg)?;
    s.wait_partition("hwm", 0, "HWM 5", |x| x.high_watermark == 5)
        .await?;
    s.say(
        "Step 15.5: the link heals; the follower fetches offset 4, and its next fetch (from \
         offset 5) tells the leader it holds it: every ISR member has offset 4, so the leader \
         advances the HWM to 5 and passes it to the follower in the fetch answer.",
    );
    let after = consumer.fetch("hwm", 0, 4, 0).await?;
    anyhow::ensure!(
        after.high_watermark == 5 && after.records.len() == 1,
        "after the follower caught up a consumer sees HWM {} and {} records",
        after.high_watermark,
        after.records.len()
    );
    s.say("The consumer now reads offset 4.");
    s.kafka(
        "Kafka's high-water mark is exclusive: the offset after the last committed record. The \
         seed's \"HWM = 3, read ≤ HWM\" is Kafka's HWM 4, read < HWM.",
    );
    s.kafka(
        "ISR membership is time-based: the follower stays in the ISR while it caught up within \
         replica.lag.time.max.ms (30 s). Had the cut lasted longer, the leader would have \
         shrunk the ISR to itself (AlterPartition) and the HWM would have moved without it.",
    );
    Ok(())
}
