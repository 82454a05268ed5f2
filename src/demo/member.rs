//! A consumer group member as Kafka's classic consumer behaves, reduced to what the rebalance
//! demo shows (Steps 17.7 and 17.10): find the coordinator, join (with KIP-394's
//! MEMBER_ID_REQUIRED round trip), let the leader member compute the `range` assignment and
//! hand it out through SyncGroup, resume each assigned partition from the group's committed
//! offset, commit what it read, and heartbeat every `session.timeout.ms / 3` until the
//! coordinator answers REBALANCE_IN_PROGRESS, then rejoin. Crashing a member is aborting its
//! task: it stops heartbeating without leaving, as a killed process does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use super::client::{self, code, Client};

/// What a member holds after its latest rebalance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberState {
    pub member_id: String,
    pub generation: i32,
    pub partitions: Vec<i32>,
    /// Per partition read after the assignment: (partition, resumed from, records read).
    pub resumed: Vec<(i32, i64, usize)>,
    /// Set when the member's loop failed.
    pub failed: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// Its `client.id` (the member id starts with it).
    pub name: String,
    pub group: String,
    pub topic: String,
    pub partitions: i32,
    /// Any broker, to find the coordinator.
    pub bootstrap: SocketAddr,
    /// Every broker's address, by id.
    pub brokers: BTreeMap<i32, SocketAddr>,
    pub session_timeout_ms: i32,
}

/// A running member.
pub struct MemberHandle {
    pub name: String,
    pub state: watch::Receiver<MemberState>,
    task: tokio::task::JoinHandle<()>,
}

impl MemberHandle {
    /// Stops the member without a LeaveGroup: its session expires at the coordinator.
    pub fn crash(self) {
        self.task.abort();
    }

    pub fn current(&self) -> MemberState {
        self.state.borrow().clone()
    }
}

pub fn spawn(config: MemberConfig) -> MemberHandle {
    let (tx, rx) = watch::channel(MemberState::default());
    let name = config.name.clone();
    let task = actix_rt::spawn(async move {
        if let Err(e) = run(&config, &tx).await {
            tx.send_modify(|s| s.failed = Some(format!("{e:#}")));
        }
    });
    MemberHandle {
        name,
        state: rx,
        task,
    }
}

async fn coordinator(config: &MemberConfig) -> anyhow::Result<Client> {
    let mut bootstrap = Client::connect(config.bootstrap, &config.name).await?;
    for _ in 0..100 {
        let (error, node) = bootstrap.find_coordinator(&config.group).await?;
        match error {
            code::NONE => {
                let addr = config
                    .brokers
                    .get(&node)
                    .ok_or_else(|| anyhow::anyhow!("coordinator {node} is not a known broker"))?;
                return Client::connect(*addr, &config.name).await;
            }
            // The offsets topic is being created or loaded: ask again, as clients do.
            code::COORDINATOR_NOT_AVAILABLE | code::COORDINATOR_LOAD_IN_PROGRESS => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => anyhow::bail!(
                "FindCoordinator: {}",
                crate::trace::event::kafka_error_name(other)
            ),
        }
    }
    anyhow::bail!("no coordinator for group {}", config.group)
}

async fn run(config: &MemberConfig, tx: &watch::Sender<MemberState>) -> anyhow::Result<()> {
    let mut c = coordinator(config).await?;
    let mut member_id = String::new();
    let heartbeat = Duration::from_millis((config.session_timeout_ms / 3).max(50) as u64);
    loop {
        // Join: the first attempt without an id is answered MEMBER_ID_REQUIRED (KIP-394).
        let join = loop {
            let r = c
                .join_group(
                    &config.group,
                    &member_id,
                    config.session_timeout_ms,
                    &[&config.topic],
                )
                .await?;
            match r.error_code {
                code::NONE => break r,
                code::MEMBER_ID_REQUIRED => member_id = r.member_id.to_string(),
                code::UNKNOWN_MEMBER_ID => member_id.clear(),
                code::COORDINATOR_LOAD_IN_PROGRESS | code::REBALANCE_IN_PROGRESS => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                // The coordinator moved or is not serving the group yet (a busy machine can
                // answer FindCoordinator before the group's coordinator starts): find it
                // again, as Kafka clients do.
                code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    c = coordinator(config).await?;
                }
                other => anyhow::bail!(
                    "JoinGroup: {}",
                    crate::trace::event::kafka_error_name(other)
                ),
            }
        };
        member_id = join.member_id.to_string();
        let generation = join.generation_id;
        // The leader member computes everyone's assignment (the coordinator only relays it).
        let assignments = if join.leader == join.member_id {
            let members: Vec<String> = join
                .members
                .iter()
                .map(|m| m.member_id.to_string())
                .collect();
            client::range_assign(&members, config.partitions)
                .into_iter()
                .map(|(m, ps)| (m, client::assignment(&config.topic, &ps)))
                .collect()
        } else {
            Vec::new()
        };
        let sync = c
            .sync_group(&config.group, generation, &member_id, assignments)
            .await?;
        match sync.error_code {
            code::NONE => {}
            code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => continue,
            code::UNKNOWN_MEMBER_ID => {
                member_id.clear();
                continue;
            }
            other => anyhow::bail!(
                "SyncGroup: {}",
                crate::trace::event::kafka_error_name(other)
            ),
        }
        let partitions = client::assigned_partitions(&sync.assignment, &config.topic);
        let resumed = consume(config, &mut c, generation, &member_id, &partitions).await?;
        tx.send_replace(MemberState {
            member_id: member_id.clone(),
            generation,
            partitions,
            resumed,
            failed: None,
        });
        // Heartbeat until the coordinator calls a rebalance.
        loop {
            tokio::time::sleep(heartbeat).await;
            match c.heartbeat(&config.group, generation, &member_id).await? {
                code::NONE => {}
                code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => break,
                code::UNKNOWN_MEMBER_ID => {
                    member_id.clear();
                    break;
                }
                other => anyhow::bail!(
                    "Heartbeat: {}",
                    crate::trace::event::kafka_error_name(other)
                ),
            }
        }
    }
}

/// Reads each assigned partition from the committed offset to its high-water mark (from the
/// partition's leader) and commits where it stopped.
async fn consume(
    config: &MemberConfig,
    coordinator: &mut Client,
    generation: i32,
    member_id: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<(i32, i64, usize)>> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let committed = coordinator
        .committed(&config.group, &config.topic, partitions)
        .await?;
    let mut bootstrap = Client::connect(config.bootstrap, &config.name).await?;
    let leaders: BTreeMap<i32, i32> = bootstrap
        .leaders(&config.topic)
        .await?
        .into_iter()
        .collect();
    let mut resumed = Vec::new();
    let mut commits = Vec::new();
    for p in partitions {
        let from = committed
            .iter()
            .find(|(q, _)| q == p)
            .map(|(_, o)| (*o).max(0))
            .unwrap_or(0);
        let leader = leaders
            .get(p)
            .and_then(|l| config.brokers.get(l))
            .ok_or_else(|| anyhow::anyhow!("partition {p} has no leader"))?;
        let mut c = Client::connect(*leader, &config.name).await?;
        let fetched = c.fetch(&config.topic, *p, from, 0).await?;
        let next = fetched.records.last().map(|r| r.0 + 1).unwrap_or(from);
        resumed.push((*p, from, fetched.records.len()));
        commits.push((*p, next));
    }
    let error = coordinator
        .commit(
            &config.group,
            generation,
            member_id,
            &config.topic,
            &commits,
        )
        .await?;
    anyhow::ensure!(
        error == code::NONE || error == code::REBALANCE_IN_PROGRESS,
        "OffsetCommit: {}",
        crate::trace::event::kafka_error_name(error)
    );
    Ok(resumed)
}
