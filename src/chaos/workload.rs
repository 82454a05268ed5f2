//! The round's workload, over weir's own wire client ([`crate::demo::client`]): one idempotent
//! producer per partition (InitProducerId, acks=all, one batch in flight, a failed or timed-out
//! batch retried with the same producer id, epoch and sequence until it is acknowledged), and
//! a consumer that reads every partition from its leader and commits its position to a group
//! (simple commits, outside group membership). Both record what they saw for the checker.
//!
//! Every record's value is unique (`r<round>-p<partition>-<pid>-<batch>-<i>`), so the checker
//! can tell a record that was written twice from two that were sent.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::demo::client::{code, stamped_batch, Client, ProducerStamp};

/// How long a request may go unanswered before the client gives up on its connection.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The produce request's own timeout (the broker's wait for the ISR).
const PRODUCE_TIMEOUT_MS: i32 = 1_500;
/// Pause after a failed request, before trying again.
const BACKOFF: Duration = Duration::from_millis(50);
/// Pause between batches, so two cores also run the brokers.
const PACE: Duration = Duration::from_millis(3);
/// How often the consumer commits.
const COMMIT_EVERY: Duration = Duration::from_millis(300);
/// InitProducerId's answer when producer ids are not ready yet (retried).
const COORDINATOR_LOAD_IN_PROGRESS: i16 = code::COORDINATOR_LOAD_IN_PROGRESS;

/// What one partition's producer saw.
#[derive(Debug, Default, Clone)]
pub struct ProducerLog {
    /// Values acknowledged, in produce order.
    pub acked: Vec<String>,
    /// Every value sent at least once.
    pub sent: Vec<String>,
    /// Fatal answers that made the producer start over with a new producer id.
    pub resets: Vec<String>,
}

/// What the consumer saw.
#[derive(Debug, Default, Clone)]
pub struct ConsumerLog {
    /// Per partition, (offset, value) of every record read.
    pub reads: BTreeMap<i32, Vec<(i64, String)>>,
    /// Per partition, the highest offset commit the coordinator acknowledged.
    pub acked_commits: BTreeMap<i32, i64>,
}

/// When producers stop starting batches, and when everyone gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// No new batches; the one in flight is retried until this deadline.
    Draining(Instant),
    Stopped,
}

/// A running workload; [`Workload::finish`] stops it and returns what it saw.
pub struct Workload {
    phase: Rc<RefCell<Phase>>,
    producers: Vec<(i32, Rc<RefCell<ProducerLog>>, tokio::task::JoinHandle<()>)>,
    consumer: (Rc<RefCell<ConsumerLog>>, tokio::task::JoinHandle<()>),
}

/// Connections by broker address, found through any broker's metadata.
struct Links {
    brokers: BTreeMap<i32, SocketAddr>,
    clients: HashMap<SocketAddr, Client>,
    client_id: String,
    /// Which broker to ask for metadata next (rotates past dead ones).
    next: usize,
}

impl Links {
    fn new(brokers: &BTreeMap<i32, SocketAddr>, client_id: String) -> Self {
        Links {
            brokers: brokers.clone(),
            clients: HashMap::new(),
            client_id,
            next: 0,
        }
    }

    async fn client(&mut self, addr: SocketAddr) -> Option<&mut Client> {
        if !self.clients.contains_key(&addr) {
            let c = tokio::time::timeout(REQUEST_DEADLINE, Client::connect(addr, &self.client_id))
                .await
                .ok()?
                .ok()?
                .with_deadline(REQUEST_DEADLINE);
            self.clients.insert(addr, c);
        }
        self.clients.get_mut(&addr)
    }

    fn drop_client(&mut self, addr: SocketAddr) {
        self.clients.remove(&addr);
    }

    /// Any broker that answers, rotating through them.
    async fn any(&mut self) -> Option<SocketAddr> {
        let addrs: Vec<SocketAddr> = self.brokers.values().copied().collect();
        for _ in 0..addrs.len() {
            let addr = addrs[self.next % addrs.len()];
            self.next += 1;
            if self.client(addr).await.is_some() {
                return Some(addr);
            }
        }
        None
    }

    /// The leader of `topic`/`partition` as the next answering broker's metadata says.
    async fn leader(&mut self, topic: &str, partition: i32) -> Option<SocketAddr> {
        let addr = self.any().await?;
        let client = self.client(addr).await?;
        match client.leaders(topic).await {
            Ok(leaders) => leaders
                .iter()
                .find(|(p, _)| *p == partition)
                .and_then(|(_, l)| self.brokers.get(l).copied()),
            Err(_) => {
                self.drop_client(addr);
                None
            }
        }
    }

    /// The group's coordinator.
    async fn coordinator(&mut self, group: &str) -> Option<SocketAddr> {
        let addr = self.any().await?;
        let client = self.client(addr).await?;
        match client.find_coordinator(group).await {
            Ok((0, id)) => self.brokers.get(&id).copied(),
            Ok(_) => None,
            Err(_) => {
                self.drop_client(addr);
                None
            }
        }
    }
}

impl Workload {
    /// Starts the producers and the consumer on `topic` (partitions 0..`partitions`) of the
    /// cluster whose brokers are `brokers`; group `group` gets the commits.
    pub fn start(
        brokers: &BTreeMap<i32, SocketAddr>,
        round: u32,
        topic: &str,
        partitions: i32,
        group: &str,
    ) -> Workload {
        let phase = Rc::new(RefCell::new(Phase::Running));
        let producers = (0..partitions)
            .map(|p| {
                let log = Rc::new(RefCell::new(ProducerLog::default()));
                let task = tokio::task::spawn_local(produce(
                    Links::new(brokers, format!("chaos-producer-{p}")),
                    round,
                    topic.to_string(),
                    p,
                    phase.clone(),
                    log.clone(),
                ));
                (p, log, task)
            })
            .collect();
        let consumer_log = Rc::new(RefCell::new(ConsumerLog::default()));
        let consumer = tokio::task::spawn_local(consume(
            Links::new(brokers, "chaos-consumer".into()),
            topic.to_string(),
            partitions,
            group.to_string(),
            phase.clone(),
            consumer_log.clone(),
        ));
        Workload {
            phase,
            producers,
            consumer: (consumer_log, consumer),
        }
    }

    /// Stops new batches, lets the ones in flight be retried for up to `drain`, stops the
    /// consumer after a last commit, and returns what every client saw.
    pub async fn finish(self, drain: Duration) -> (BTreeMap<i32, ProducerLog>, ConsumerLog) {
        *self.phase.borrow_mut() = Phase::Draining(Instant::now() + drain);
        let mut logs = BTreeMap::new();
        for (p, log, task) in self.producers {
            let _ = task.await;
            logs.insert(p, log.borrow().clone());
        }
        *self.phase.borrow_mut() = Phase::Stopped;
        let (log, task) = self.consumer;
        let _ = task.await;
        let consumer = log.borrow().clone();
        (logs, consumer)
    }
}

/// One partition's idempotent producer.
async fn produce(
    mut links: Links,
    round: u32,
    topic: String,
    partition: i32,
    phase: Rc<RefCell<Phase>>,
    log: Rc<RefCell<ProducerLog>>,
) {
    let mut producer: Option<(i64, i16)> = None;
    let mut sequence = 0i32;
    let mut batch_no = 0u64;
    // The batch in flight: its values and encoded bytes (re-sent unchanged).
    let mut pending: Option<(Vec<String>, Bytes)> = None;
    loop {
        let now_phase = *phase.borrow();
        match now_phase {
            Phase::Stopped => break,
            Phase::Draining(deadline) if pending.is_none() || Instant::now() > deadline => break,
            _ => {}
        }
        let Some((pid, epoch)) = producer else {
            producer = init_producer(&mut links).await;
            if producer.is_none() {
                tokio::time::sleep(BACKOFF).await;
            }
            continue;
        };
        if pending.is_none() {
            batch_no += 1;
            let count = 1 + (batch_no % 4) as usize;
            let values: Vec<String> = (0..count)
                .map(|i| format!("r{round}-p{partition}-{pid}-{batch_no}-{i}"))
                .collect();
            let records: Vec<(Option<Bytes>, Bytes)> = values
                .iter()
                .map(|v| (None, Bytes::from(v.clone())))
                .collect();
            let bytes = stamped_batch(
                &records,
                Some(ProducerStamp {
                    producer_id: pid,
                    producer_epoch: epoch,
                    base_sequence: sequence,
                }),
            );
            log.borrow_mut().sent.extend(values.iter().cloned());
            pending = Some((values, bytes));
        }
        let Some((values, bytes)) = pending.clone() else {
            continue;
        };
        let Some(leader) = links.leader(&topic, partition).await else {
            tokio::time::sleep(BACKOFF).await;
            continue;
        };
        let answer = match links.client(leader).await {
            Some(c) => {
                c.produce_batch(&topic, partition, -1, bytes, PRODUCE_TIMEOUT_MS)
                    .await
            }
            None => Err(anyhow::anyhow!("cannot connect to {leader}")),
        };
        match answer {
            Ok(Some(p))
                if p.error_code == code::NONE
                    || p.error_code == code::DUPLICATE_SEQUENCE_NUMBER =>
            {
                sequence = sequence.wrapping_add(values.len() as i32);
                log.borrow_mut().acked.extend(values);
                pending = None;
                tokio::time::sleep(PACE).await;
            }
            // The producer's state is gone or out of step: Kafka's producer treats these as
            // fatal. Start over with a new producer id; the batch stays unacknowledged.
            Ok(Some(p))
                if matches!(
                    p.error_code,
                    code::OUT_OF_ORDER_SEQUENCE_NUMBER
                        | code::UNKNOWN_PRODUCER_ID
                        | code::INVALID_PRODUCER_EPOCH
                ) =>
            {
                let why = crate::trace::event::kafka_error_name(p.error_code);
                tracing::warn!(%topic, partition, producer_id = pid, sequence, %why, "chaos producer starts over");
                log.borrow_mut().resets.push(format!(
                    "p{partition}: {why} for producer {pid} sequence {sequence}"
                ));
                producer = None;
                sequence = 0;
                pending = None;
            }
            Ok(_) => tokio::time::sleep(BACKOFF).await,
            Err(_) => {
                links.drop_client(leader);
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

async fn init_producer(links: &mut Links) -> Option<(i64, i16)> {
    let addr = links.any().await?;
    let client = links.client(addr).await?;
    match client.init_producer_id().await {
        Ok((code::NONE, pid, epoch)) => Some((pid, epoch)),
        Ok((c, _, _)) => {
            if c != COORDINATOR_LOAD_IN_PROGRESS {
                tracing::debug!(code = c, "InitProducerId refused");
            }
            None
        }
        Err(_) => {
            links.drop_client(addr);
            None
        }
    }
}

/// The consumer: reads every partition from its leader, commits its positions.
async fn consume(
    mut links: Links,
    topic: String,
    partitions: i32,
    group: String,
    phase: Rc<RefCell<Phase>>,
    log: Rc<RefCell<ConsumerLog>>,
) {
    let mut positions: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut last_commit = Instant::now();
    loop {
        let stopping = *phase.borrow() == Phase::Stopped;
        for p in 0..partitions {
            if stopping {
                break;
            }
            let Some(leader) = links.leader(&topic, p).await else {
                continue;
            };
            let offset = positions[&p];
            let fetched = match links.client(leader).await {
                Some(c) => c.fetch(&topic, p, offset, 50).await,
                None => continue,
            };
            match fetched {
                Ok(f) if f.error_code == code::NONE => {
                    let mut log = log.borrow_mut();
                    let reads = log.reads.entry(p).or_default();
                    for (o, _, v) in f.records {
                        reads.push((o, String::from_utf8_lossy(&v).into_owned()));
                        positions.insert(p, o + 1);
                    }
                }
                Ok(_) => {}
                Err(_) => links.drop_client(leader),
            }
        }
        if stopping || last_commit.elapsed() >= COMMIT_EVERY {
            last_commit = Instant::now();
            let offsets: Vec<(i32, i64)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
            if let Some(coordinator) = links.coordinator(&group).await {
                let answer = match links.client(coordinator).await {
                    Some(c) => c.commit(&group, -1, "", &topic, &offsets).await,
                    None => Err(anyhow::anyhow!("cannot connect to {coordinator}")),
                };
                match answer {
                    Ok(code::NONE) => {
                        let mut log = log.borrow_mut();
                        for (p, o) in offsets {
                            let acked = log.acked_commits.entry(p).or_insert(o);
                            *acked = (*acked).max(o);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => links.drop_client(coordinator),
                }
            }
        }
        if stopping {
            break;
        }
    }
}

/// The committed offsets of `group` for `topic`, asked of its coordinator until it answers
/// or `deadline` passes.
pub async fn committed(
    brokers: &BTreeMap<i32, SocketAddr>,
    group: &str,
    topic: &str,
    partitions: i32,
    deadline: Duration,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut links = Links::new(brokers, "chaos-checker".into());
    let until = Instant::now() + deadline;
    let wanted: Vec<i32> = (0..partitions).collect();
    let mut last_error = String::from("no coordinator");
    while Instant::now() < until {
        if let Some(addr) = links.coordinator(group).await {
            if let Some(c) = links.client(addr).await {
                match c.committed(group, topic, &wanted).await {
                    Ok(offsets) => return Ok(offsets.into_iter().collect()),
                    Err(e) => {
                        last_error = format!("{e:#}");
                        links.drop_client(addr);
                    }
                }
            }
        }
        tokio::time::sleep(BACKOFF).await;
    }
    anyhow::bail!("reading the committed offsets of {group}: {last_error}")
}
