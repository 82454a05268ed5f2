//! Step 16: acks=0, 1 and all side by side, then the window in which acks=1 loses an
//! acknowledged record: the leader acknowledges alone, dies before any follower copied it, a
//! follower takes over, and the record is gone everywhere.

use futures::future::LocalBoxFuture;

use super::super::client::code;
use super::super::{Demo, Stage};
use super::{ids, value};
use crate::cluster::faults::Fault;
use crate::transport::faults::Node;

pub const DEMO: Demo = Demo {
    name: "acks",
    title: "Producer acknowledgments: acks=0, 1 and all",
    seed: "Step 16",
    sets: &[],
    trace_from_start: false,
    expect: &[
        "client:producer -> @leader : Produce acks-0*acks=0*",
        "client:producer -> @leader : Produce acks-0*acks=1*",
        "@leader -> client:producer : Produce*ok",
        "client:producer -> @leader : Produce acks-0*acks=all*",
        "@leader -> b* : ReplicaFetch*bytes*",
        "@leader : HighWatermark acks-0*",
        "@leader -> client:producer : Produce*ok",
        "console -> b* : cut*",
        "client:producer -> @leader : Produce acks-0*acks=1*",
        "@leader -> client:producer : Produce*ok",
        "client:producer -> @leader : Produce acks-0*acks=all*",
        "@leader -> client:producer : Produce*REQUEST_TIMED_OUT",
        "console -> @leader : crash*",
        "@controller : ElectLeader acks-0*",
        "@controller -> @new_leader : LeaderAndIsr*",
        "console -> @leader : restart*",
        "@leader : BecomeFollower acks-0*",
        "client:consumer -> @new_leader : Fetch acks-0*",
    ],
    hide: &[],
    run,
};

fn run(stage: &mut Stage) -> LocalBoxFuture<'_, anyhow::Result<()>> {
    Box::pin(script(stage))
}

async fn script(s: &mut Stage) -> anyhow::Result<()> {
    let controller = s.controller().await?;
    // The leader is not the controller, so its crash is Case 4 without a controller failover.
    let leader = (1..=3).find(|b| *b != controller).unwrap_or(1);
    let followers: Vec<i32> = (1..=3).filter(|b| *b != leader).collect();
    let mut replicas = vec![leader];
    replicas.extend(&followers);
    s.create_topic("acks", 1, Some(std::slice::from_ref(&replicas)))
        .await?;
    s.role("leader", leader);
    s.role("controller", controller);
    s.start_trace()?;
    s.say(format!(
        "The scene: partition acks-0 with replicas {} (leader {leader}), \
         min.insync.replicas=2.",
        ids(&replicas)
    ));
    let mut producer = s.client(leader, "producer").await?;
    let none = producer
        .produce("acks", 0, 0, &[value("a0")], 10_000)
        .await?;
    anyhow::ensure!(none.is_none());
    s.say(
        "acks=0: the producer sent a0 and expects no answer (no response arrow in the diagram): \
         it cannot know whether the leader wrote it.",
    );
    let one = producer
        .produce("acks", 0, 1, &[value("a1")], 10_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(one.error_code == 0);
    s.say(format!(
        "acks=1: the leader appended a1 and answered at once (offset {}), before any follower \
         fetched it.",
        one.base_offset
    ));
    let all = producer
        .produce("acks", 0, -1, &[value("a-all")], 10_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(all.error_code == 0);
    s.say(format!(
        "acks=all: the leader answered (offset {}) only once both followers had fetched the \
         record — their fetch answers carrying it, then the HWM move, come before the Produce \
         answer: producer acknowledgment ≈ consumer visibility.",
        all.base_offset
    ));

    // The window: the followers cannot fetch, the leader acknowledges alone, then dies.
    for f in &followers {
        s.cluster
            .inject(Fault::Cut {
                from: Node::Broker(*f),
                to: Node::Broker(leader),
                both: true,
            })
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let lost = producer
        .produce("acks", 0, 1, &[value("lost")], 10_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(lost.error_code == 0);
    s.say(format!(
        "Now both followers are cut off from the leader. `lost` is produced with acks=1: the \
         leader alone has it and acknowledges offset {}.",
        lost.base_offset
    ));
    let refused = producer
        .produce("acks", 0, -1, &[value("safe")], 1_500)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(
        refused.error_code == code::REQUEST_TIMED_OUT,
        "acks=all during the cut answered {}",
        refused.error_code
    );
    s.say(
        "The same with acks=all is not acknowledged: the ISR still names the followers, they \
         never get it, and after the request's timeout (1.5 s) the producer is told \
         REQUEST_TIMED_OUT — it knows, and can retry.",
    );
    s.cluster
        .inject(Fault::Crash(leader))
        .await
        .map_err(anyhow::Error::msg)?;
    s.cluster
        .inject(Fault::Heal(None))
        .await
        .map_err(anyhow::Error::msg)?;
    let after = s
        .wait_partition("acks", 0, "a new leader", |x| {
            x.leader >= 0 && x.leader != leader
        })
        .await?;
    let new_leader = after.leader;
    s.role("new_leader", new_leader);
    s.say(format!(
        "The leader crashes before any follower copied offset {}. The controller elects broker \
         {new_leader} from the ISR; it never had that offset.",
        lost.base_offset
    ));
    s.cluster
        .inject(Fault::Restart(leader))
        .await
        .map_err(anyhow::Error::msg)?;
    s.wait_partition("acks", 0, "the old leader back in the ISR", |x| {
        x.isr.contains(&leader)
    })
    .await?;
    s.say(format!(
        "Broker {leader} restarts as a follower, truncates its log where it diverges from the \
         new leader's (by leader epoch, KIP-101) and catches up, rejoining the ISR."
    ));
    let mut consumer = s.client(new_leader, "consumer").await?;
    let fetched = consumer.fetch("acks", 0, 0, 0).await?;
    let values: Vec<String> = fetched
        .records
        .iter()
        .map(|(_, _, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    anyhow::ensure!(
        !values.iter().any(|v| v == "lost") && values.iter().any(|v| v == "a-all"),
        "after the failover the log holds {values:?}"
    );
    s.say(format!(
        "A consumer reads {} from broker {new_leader}: `lost`, acknowledged with acks=1, is gone \
         — the window the seed warns about. Every acks=all record survived.",
        values.join(", ")
    ));
    s.kafka("Kafka's producers default to acks=all (Java since 3.0, librdkafka since 1.x), not 1.");
    s.kafka(
        "acks=all waits for the current ISR, however small; min.insync.replicas is what makes it \
         safe: with fewer ISR members the leader refuses up front (NOT_ENOUGH_REPLICAS). Here \
         the ISR was still full, so the request waited and timed out.",
    );
    Ok(())
}
