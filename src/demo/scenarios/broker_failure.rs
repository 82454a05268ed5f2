//! Case 4 and Step 14.7: a broker leading a partition dies; its session expires, the
//! controller's watch fires, it elects a new leader from the ISR, writes the state, tells the
//! replicas and every broker, and producers refresh their metadata and retry.

use futures::future::LocalBoxFuture;

use super::super::{Demo, Stage};
use super::{ids, value};
use crate::cluster::faults::Fault;

pub const DEMO: Demo = Demo {
    name: "broker-failure",
    title: "A broker goes down",
    seed: "Case 4 and Step 14.7",
    sets: &[],
    trace_from_start: false,
    expect: &[
        "console -> @victim : crash*",
        "coord -> @controller : NodeChildrenChanged /brokers/ids",
        "@controller : BrokersFailed*",
        "@controller : ElectLeader orders-*",
        "@controller -> coord : multi /brokers/topics/orders/partitions/*/state*",
        "@controller -> @new_leader : LeaderAndIsr*",
        "@new_leader : BecomeLeader orders-*",
        "@controller -> * : UpdateMetadata*",
        "client:producer -> * : Metadata*",
        "client:producer -> @new_leader : Produce orders-*",
        "@new_leader -> client:producer : Produce*ok",
    ],
    hide: &[],
    run,
};

fn run(stage: &mut Stage) -> LocalBoxFuture<'_, anyhow::Result<()>> {
    Box::pin(script(stage))
}

async fn script(s: &mut Stage) -> anyhow::Result<()> {
    let controller = s.controller().await?;
    let states = s.create_topic("orders", 3, None).await?;
    // The victim leads a partition and is not the controller (Case 4 without a controller
    // failover).
    let target = states
        .iter()
        .find(|st| st.leader != controller)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the controller leads every partition"))?;
    let (victim, p) = (target.leader, target.partition);
    let mut producer = s.client(victim, "producer").await?;
    for i in 0..3 {
        let r = producer
            .produce("orders", p, -1, &[value(&format!("before-{i}"))], 10_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no answer"))?;
        anyhow::ensure!(r.error_code == 0, "producing: {}", r.error_code);
    }
    s.wait_partition("orders", p, "HWM 3", |x| x.high_watermark == 3)
        .await?;
    drop(producer);
    s.role("controller", controller);
    s.role("victim", victim);
    s.start_trace()?;
    s.say(format!(
        "The scene: orders-{p} has leader broker {victim}, ISR {}, and 3 acknowledged records \
         (acks=all, HWM 3). Broker {controller} is the controller.",
        ids(&target.isr)
    ));
    s.cluster
        .inject(Fault::Crash(victim))
        .await
        .map_err(anyhow::Error::msg)?;
    s.say(format!(
        "Step 4.1: broker {victim} crashes (the fault console's `crash {victim}`): no controlled \
         shutdown, its session simply stops."
    ));
    let after = s
        .wait_partition("orders", p, "a new leader", |x| {
            x.leader >= 0 && x.leader != victim
        })
        .await?;
    let new_leader = after.leader;
    s.role("new_leader", new_leader);
    s.say(format!(
        "Step 4.2: after zookeeper.session.timeout.ms (3 s here) the coordination service \
         expired the session, deleted the ephemeral /brokers/ids/{victim} and fired the \
         controller's watch on /brokers/ids — and did nothing else."
    ));
    s.say(format!(
        "Step 4.3–4.4: the controller, holding the full metadata in memory, found broker \
         {victim}'s partitions, removed {victim} from their ISRs and elected for orders-{p} the \
         first live ISR replica, broker {new_leader}, with leader epoch {} (was {}).",
        after.leader_epoch, target.leader_epoch
    ));
    s.say(format!(
        "Step 4.5: it wrote each new state znode (fenced by its controller epoch), sent \
         LeaderAndIsr to the replicas and UpdateMetadata to the live brokers; broker \
         {new_leader} became leader and ISR is now {}.",
        ids(&after.isr)
    ));
    let mut producer = s.client(new_leader, "producer").await?;
    let leaders = producer.leaders("orders").await?;
    anyhow::ensure!(leaders.iter().any(|(q, l)| *q == p && *l == new_leader));
    let r = producer
        .produce("orders", p, -1, &[value("after")], 10_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    anyhow::ensure!(
        r.error_code == 0,
        "producing after failover: {}",
        r.error_code
    );
    s.say(format!(
        "Step 4.6: a producer's connection to broker {victim} failed; it refreshed its \
         metadata (leader of orders-{p}: broker {new_leader}) and retried there: offset {}.",
        r.base_offset
    ));
    let mut consumer = s.client(new_leader, "consumer").await?;
    let fetched = consumer.fetch("orders", p, 0, 0).await?;
    let values: Vec<String> = fetched
        .records
        .iter()
        .map(|(_, _, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    anyhow::ensure!(
        values == ["before-0", "before-1", "before-2", "after"],
        "the new leader holds {values:?}"
    );
    s.say(format!(
        "Step 14.7's result: the new leader holds every acknowledged record ({}): the ISR had \
         them, so nothing was lost, and consumers were never shown anything beyond the HWM.",
        values.join(", ")
    ));
    s.kafka(
        "The controller removes the dead broker from the ISR of every partition it hosted, not \
         only those it led (or acks=all there would stall); where it was the last ISR member \
         the partition goes offline (leader −1) rather than elect an out-of-sync replica, \
         unless unclean.leader.election.enable.",
    );
    s.kafka(
        "Replicas learn of the new leader through LeaderAndIsr, all brokers through \
         UpdateMetadata (the seed names only the latter); a live ex-leader answers \
         NOT_LEADER_OR_FOLLOWER, which is what makes clients refresh.",
    );
    Ok(())
}
