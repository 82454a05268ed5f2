//! Steps 17.7 and 17.10: a third consumer joins a group of two and the partitions are
//! redistributed; then a consumer dies, its heartbeats stop, and its partitions move to the
//! survivors, who resume from the committed offsets.

use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;

use super::super::member::{self, MemberConfig, MemberHandle, MemberState};
use super::super::{Demo, Stage};
use super::value;

pub const DEMO: Demo = Demo {
    name: "rebalance",
    title: "Consumer group rebalancing",
    seed: "Steps 17.7 and 17.10",
    sets: &[],
    trace_from_start: false,
    expect: &[
        "client:C1 -> * : FindCoordinator*",
        "client:C1 -> @coordinator : JoinGroup*",
        "client:C3 -> @coordinator : JoinGroup*new member*",
        "@coordinator -> client:C* : Heartbeat*REBALANCE_IN_PROGRESS",
        "client:C* -> @coordinator : SyncGroup*assignments for 3 members",
        "@coordinator -> client:C3 : SyncGroup*assigned orders-3 ok",
        "@coordinator -> client:C* : Heartbeat*REBALANCE_IN_PROGRESS",
        "client:C* -> @coordinator : SyncGroup*assignments for 2 members",
        "@coordinator -> client:C3 : SyncGroup*assigned orders-2 orders-3 ok",
        "client:C3 -> @coordinator : OffsetFetch*",
        "client:C3 -> * : Fetch orders-2*offset 2*",
    ],
    // Replication underneath (the offsets topic's commits) is not the story here.
    hide: &["ReplicaFetch*", "HighWatermark*"],
    run,
};

const GROUP: &str = "G1";
const SESSION_TIMEOUT_MS: i32 = 1500;

fn run(stage: &mut Stage) -> LocalBoxFuture<'_, anyhow::Result<()>> {
    Box::pin(script(stage))
}

fn describe(states: &[(&str, MemberState)]) -> String {
    states
        .iter()
        .map(|(name, s)| {
            let ps: Vec<String> = s.partitions.iter().map(|p| format!("P{p}")).collect();
            format!("{name} → {}", ps.join(" "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until `members` agree on a generation newer than `after` and share all 4 partitions.
async fn settled(members: &[&MemberHandle], after: i32) -> anyhow::Result<Vec<MemberState>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states: Vec<MemberState> = members.iter().map(|m| m.current()).collect();
        if let Some(failed) = states.iter().find_map(|s| s.failed.clone()) {
            anyhow::bail!("a member failed: {failed}");
        }
        let generation = states[0].generation;
        let mut all: Vec<i32> = states.iter().flat_map(|s| s.partitions.clone()).collect();
        all.sort();
        if generation > after
            && states.iter().all(|s| s.generation == generation)
            && all == [0, 1, 2, 3]
        {
            return Ok(states);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the group did not settle: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn script(s: &mut Stage) -> anyhow::Result<()> {
    let leaders: Vec<i32> = s
        .create_topic("orders", 4, None)
        .await?
        .iter()
        .map(|p| p.leader)
        .collect();
    // Two records in every partition before anyone consumes.
    for (p, leader) in leaders.iter().enumerate() {
        let mut producer = s.client(*leader, "producer").await?;
        for i in 0..2 {
            let r = producer
                .produce(
                    "orders",
                    p as i32,
                    -1,
                    &[value(&format!("p{p}-{i}"))],
                    10_000,
                )
                .await?
                .ok_or_else(|| anyhow::anyhow!("no answer"))?;
            anyhow::ensure!(r.error_code == 0);
        }
    }
    s.start_trace()?;
    let brokers = s.addrs();
    let config = |name: &str| MemberConfig {
        name: name.to_string(),
        group: GROUP.to_string(),
        topic: "orders".to_string(),
        partitions: 4,
        bootstrap: brokers[&1],
        brokers: brokers.clone(),
        session_timeout_ms: SESSION_TIMEOUT_MS,
    };
    let c1 = member::spawn(config("C1"));
    let coordinator = s
        .wait("the offsets topic's leader", |st| {
            st.partitions
                .iter()
                .find(|p| p.topic == "__consumer_offsets" && p.leader >= 0)
                .map(|p| p.leader)
        })
        .await?;
    s.role("coordinator", coordinator);
    let c2 = member::spawn(config("C2"));
    let first = settled(&[&c1, &c2], 0).await?;
    s.say(format!(
        "Step 17.7, initial state: C1 and C2 found the group coordinator of G1 (broker \
         {coordinator}, the leader of G1's __consumer_offsets partition), joined \
         (JoinGroup/SyncGroup, generation {}): {}. Each read its partitions and committed \
         offset 2.",
        first[0].generation,
        describe(&[("C1", first[0].clone()), ("C2", first[1].clone())])
    ));
    let c3 = member::spawn(config("C3"));
    let second = settled(&[&c1, &c2, &c3], first[0].generation).await?;
    s.say(format!(
        "C3 joins. The coordinator starts a rebalance: it answers C1's and C2's heartbeats \
         REBALANCE_IN_PROGRESS, they stop consuming and rejoin, it holds every JoinGroup until \
         all members are in, names a leader member, which computes the assignment and sends it \
         in its SyncGroup; the coordinator hands each member its share (generation {}): {}.",
        second[0].generation,
        describe(&[
            ("C1", second[0].clone()),
            ("C2", second[1].clone()),
            ("C3", second[2].clone())
        ])
    ));
    let c2_partitions = second[1].partitions.clone();
    // Records C2 will not live to read.
    for p in &c2_partitions {
        let leader = leaders[*p as usize];
        let mut producer = s.client(leader, "producer").await?;
        for i in 2..4 {
            producer
                .produce("orders", *p, -1, &[value(&format!("p{p}-{i}"))], 10_000)
                .await?;
        }
    }
    c2.crash();
    s.say(format!(
        "Step 17.10: C2 crashes (no LeaveGroup) holding {}; two more records arrive there.",
        describe(&[("C2", second[1].clone())])
    ));
    let third = settled(&[&c1, &c3], second[0].generation).await?;
    s.say(format!(
        "Its heartbeats stop; after session.timeout.ms ({SESSION_TIMEOUT_MS} ms here) the \
         coordinator removes it and rebalances: C1 and C3 rejoin (generation {}): {}.",
        third[0].generation,
        describe(&[("C1", third[0].clone()), ("C3", third[1].clone())])
    ));
    let resumed: Vec<String> = third
        .iter()
        .flat_map(|st| st.resumed.iter())
        .filter(|(p, _, _)| c2_partitions.contains(p))
        .map(|(p, from, n)| format!("P{p} from offset {from} ({n} records)"))
        .collect();
    s.say(format!(
        "The new owners resumed C2's partitions from the committed offsets: {} — nothing lost; \
         what C2 had read without committing would be read again (at-least-once).",
        resumed.join(", ")
    ));
    c1.crash();
    c3.crash();
    s.kafka(
        "The coordinator does not compute assignments: it picks a leader member, whose client \
         computes them (here Kafka's range assignor, which gives the extra partitions to the \
         first members: C1 → P0 P1, C2 → P2, C3 → P3 where the seed shows C1 → P0, C2 → P1, \
         C3 → P2 P3), and distributes them in SyncGroup.",
    );
    s.kafka(
        "A new member's first JoinGroup is answered MEMBER_ID_REQUIRED with an id to rejoin \
         with (KIP-394). With the cooperative-sticky assignor (KIP-429) members keep consuming \
         the partitions they keep; this demo runs the eager protocol the seed describes.",
    );
    Ok(())
}
