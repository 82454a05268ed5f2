//! The checker: what the clients saw and what the logs hold after a round, against the
//! invariants a log broker owes its clients. Pure functions over a [`History`], so tests feed
//! it histories with a lost, a duplicated or a reordered record, a divergent replica or a
//! rolled-back commit and see each one reported.
//!
//! | invariant | how it is checked |
//! |---|---|
//! | every acknowledged record is present exactly once, in produce order | each acked value's count in the leader's log over [log start, HWM) is 1; their offsets rise in the order they were acked |
//! | replicas are byte-identical over [largest log start, HWM) | every replica's stored batches in that range equal the leader's |
//! | no consumer read a record that is later absent | every (offset, value) a consumer read is at that offset in the log |
//! | committed offsets are never lost or rolled back | the committed offset read back is at least the highest commit the coordinator acknowledged |
//! | every partition has a leader within a bound after the last heal | measured by the runner, checked here against the bound |
//!
//! Values are unique per produce attempt, so a value found twice is a duplicate whether or
//! not it was acknowledged; values that were sent but never acknowledged may be present (once)
//! or absent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;

/// One stored batch of a replica: its offsets and its bytes as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Bytes,
}

/// What one replica of a partition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLog {
    pub broker: i32,
    pub log_start_offset: i64,
    pub batches: Vec<StoredBatch>,
}

/// Everything known about one partition after a round.
#[derive(Debug, Clone, Default)]
pub struct PartitionHistory {
    /// Values acknowledged to a producer, in the order each producer produced them (one
    /// producer per partition).
    pub acked: Vec<String>,
    /// Values sent but never acknowledged: each may be present at most once, or absent.
    pub unacked: Vec<String>,
    /// (offset, value) of every record a consumer read.
    pub reads: Vec<(i64, String)>,
    /// (offset, value) of the leader's log over [log start, HWM) after the round.
    pub log: Vec<(i64, String)>,
    /// Every replica's stored batches; the leader's is the reference.
    pub replicas: Vec<ReplicaLog>,
    pub leader: i32,
    pub high_watermark: i64,
    /// The highest offset commit the group coordinator acknowledged, if any.
    pub acked_commit: Option<i64>,
    /// The committed offset read back after the round (−1 for none).
    pub committed_after: i64,
}

/// A round's history: per partition, plus how long the cluster took to elect leaders after
/// the last fault healed (`None`: not within the runner's wait).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub partitions: BTreeMap<i32, PartitionHistory>,
    pub leaders_after_heal: Option<Duration>,
    /// Partitions (of any topic) that never got a full, caught-up ISR after the heal, each
    /// described with its leader, ISR and offsets; empty when all did.
    pub unsettled: Vec<String>,
}

/// What the checker found. `violations` says each one in words; the counts add up over a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub acked: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Partitions whose replicas differ over [largest log start, HWM).
    pub divergent: u64,
    /// Records a consumer read that are not at their offset any more.
    pub vanished_reads: u64,
    /// Partitions whose committed offset went below an acknowledged commit.
    pub rolled_back_commits: u64,
    /// Records in the log no producer sent.
    pub phantoms: u64,
    pub leaderless: bool,
    pub violations: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks every invariant over `history`; `leader_bound` is how soon after the last heal
/// every partition must have a leader.
pub fn check(history: &History, leader_bound: Duration) -> Verdict {
    let mut v = Verdict::default();
    for (&p, h) in &history.partitions {
        check_records(p, h, &mut v);
        check_reads(p, h, &mut v);
        check_replicas(p, h, &mut v);
        check_commits(p, h, &mut v);
    }
    match history.leaders_after_heal {
        Some(t) if t <= leader_bound => {}
        Some(t) => {
            v.leaderless = true;
            v.violations.push(format!(
                "partitions had no leader for {t:?} after the last heal (bound {leader_bound:?})"
            ));
        }
        None => {
            v.leaderless = true;
            v.violations.push(format!(
                "some partition had no leader long after the last heal (bound {leader_bound:?})"
            ));
        }
    }
    if !history.unsettled.is_empty() {
        v.violations.push(format!(
            "no full, caught-up ISR after the heal: {}",
            history.unsettled.join("; ")
        ));
    }
    v
}

fn check_records(p: i32, h: &PartitionHistory, v: &mut Verdict) {
    let mut positions: HashMap<&str, Vec<i64>> = HashMap::new();
    for (offset, value) in &h.log {
        positions.entry(value.as_str()).or_default().push(*offset);
    }
    v.acked += h.acked.len() as u64;
    let mut previous: Option<(i64, &str)> = None;
    for value in &h.acked {
        match positions.get(value.as_str()).map(Vec::as_slice) {
            None | Some([]) => {
                v.lost += 1;
                v.violations
                    .push(format!("p{p}: acknowledged `{value}` is not in the log"));
            }
            Some([offset, ..]) => {
                if let Some((before, before_value)) = previous {
                    if *offset < before {
                        v.reordered += 1;
                        v.violations.push(format!(
                            "p{p}: `{value}` (offset {offset}) was acknowledged after `{before_value}` (offset {before}) but precedes it"
                        ));
                    }
                }
                previous = Some((*offset, value));
            }
        }
    }
    let sent: HashSet<&str> = h
        .acked
        .iter()
        .chain(&h.unacked)
        .map(String::as_str)
        .collect();
    let mut values: Vec<(&&str, &Vec<i64>)> = positions.iter().collect();
    values.sort();
    for (value, offsets) in values {
        if offsets.len() > 1 {
            v.duplicated += offsets.len() as u64 - 1;
            v.violations.push(format!(
                "p{p}: `{value}` is in the log at offsets {offsets:?}"
            ));
        }
        if !sent.contains(*value) {
            v.phantoms += 1;
            v.violations.push(format!(
                "p{p}: `{value}` at offset {:?} was never sent",
                offsets
            ));
        }
    }
}

fn check_reads(p: i32, h: &PartitionHistory, v: &mut Verdict) {
    let log: HashMap<i64, &str> = h.log.iter().map(|(o, s)| (*o, s.as_str())).collect();
    for (offset, value) in &h.reads {
        if log.get(offset) != Some(&value.as_str()) {
            v.vanished_reads += 1;
            v.violations.push(format!(
                "p{p}: a consumer read `{value}` at offset {offset}; the log now has {:?}",
                log.get(offset)
            ));
        }
    }
}

/// The bytes of the batches of `r` inside [from, to), and whether they cover it exactly.
fn range_bytes(r: &ReplicaLog, from: i64, to: i64) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut next = from;
    for b in r
        .batches
        .iter()
        .filter(|b| b.last_offset >= from && b.base_offset < to)
    {
        if b.base_offset != next {
            return (bytes, false);
        }
        bytes.extend_from_slice(&b.bytes);
        next = b.last_offset + 1;
    }
    (bytes, next >= to || from >= to)
}

fn check_replicas(p: i32, h: &PartitionHistory, v: &mut Verdict) {
    let Some(leader) = h.replicas.iter().find(|r| r.broker == h.leader) else {
        v.divergent += 1;
        v.violations.push(format!(
            "p{p}: the leader's ({}) log was not read",
            h.leader
        ));
        return;
    };
    let from = h
        .replicas
        .iter()
        .map(|r| r.log_start_offset)
        .max()
        .unwrap_or(0);
    let to = h.high_watermark;
    let (reference, covered) = range_bytes(leader, from, to);
    let mut differs = Vec::new();
    if !covered {
        differs.push(format!("leader {} has a gap", leader.broker));
    }
    for r in h.replicas.iter().filter(|r| r.broker != h.leader) {
        let (bytes, covered) = range_bytes(r, from, to);
        if !covered {
            differs.push(format!("broker {} lacks part of it", r.broker));
        } else if bytes != reference {
            differs.push(format!("broker {} stores other bytes", r.broker));
        }
    }
    if !differs.is_empty() {
        v.divergent += 1;
        v.violations.push(format!(
            "p{p}: replicas differ over [{from}, {to}): {}",
            differs.join(", ")
        ));
    }
}

fn check_commits(p: i32, h: &PartitionHistory, v: &mut Verdict) {
    if let Some(acked) = h.acked_commit {
        if h.committed_after < acked {
            v.rolled_back_commits += 1;
            v.violations.push(format!(
                "p{p}: committed offset {} after the round, below the acknowledged commit {acked}",
                h.committed_after
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn batch(base: i64, values: &[&str]) -> StoredBatch {
        StoredBatch {
            base_offset: base,
            last_offset: base + values.len() as i64 - 1,
            bytes: Bytes::from(values.join(",")),
        }
    }

    /// A healthy partition: a, b, c, d acked and in the log, replicated to 3 brokers, read,
    /// committed.
    fn healthy() -> History {
        let values = ["a", "b", "c", "d"];
        let replica = |broker| ReplicaLog {
            broker,
            log_start_offset: 0,
            batches: vec![batch(0, &values[..2]), batch(2, &values[2..])],
        };
        let p = PartitionHistory {
            acked: values.iter().map(|s| s.to_string()).collect(),
            unacked: vec!["e".into()],
            reads: vec![(0, "a".into()), (1, "b".into())],
            log: values
                .iter()
                .enumerate()
                .map(|(i, s)| (i as i64, s.to_string()))
                .collect(),
            replicas: vec![replica(1), replica(2), replica(3)],
            leader: 1,
            high_watermark: 4,
            acked_commit: Some(2),
            committed_after: 2,
        };
        History {
            partitions: [(0, p)].into_iter().collect(),
            leaders_after_heal: Some(Duration::from_secs(1)),
            unsettled: Vec::new(),
        }
    }

    fn p0(h: &mut History) -> &mut PartitionHistory {
        h.partitions.get_mut(&0).unwrap()
    }

    #[test]
    fn a_healthy_history_passes() {
        let v = check(&healthy(), BOUND);
        assert!(v.ok(), "{:?}", v.violations);
        assert_eq!(v.acked, 4);
    }

    #[test]
    fn a_lost_acknowledged_record_is_reported() {
        let mut h = healthy();
        p0(&mut h).log.remove(2);
        let v = check(&h, BOUND);
        assert_eq!(v.lost, 1);
        assert!(v
            .violations
            .iter()
            .any(|s| s.contains("`c` is not in the log")));
    }

    #[test]
    fn a_duplicated_record_is_reported() {
        let mut h = healthy();
        p0(&mut h).log.push((4, "b".into()));
        let v = check(&h, BOUND);
        assert_eq!(v.duplicated, 1);
        assert!(!v.ok());
    }

    #[test]
    fn an_unacknowledged_record_may_be_present_once_but_not_twice() {
        let mut h = healthy();
        p0(&mut h).log.push((4, "e".into()));
        assert!(check(&h, BOUND).ok());
        p0(&mut h).log.push((5, "e".into()));
        assert_eq!(check(&h, BOUND).duplicated, 1);
    }

    #[test]
    fn a_reordered_record_is_reported() {
        let mut h = healthy();
        let log = &mut p0(&mut h).log;
        log[1].1 = "c".into();
        log[2].1 = "b".into();
        let v = check(&h, BOUND);
        assert_eq!(v.reordered, 1);
        assert!(!v.ok());
    }

    #[test]
    fn a_divergent_replica_is_reported() {
        let mut h = healthy();
        p0(&mut h).replicas[2].batches[1] = batch(2, &["c", "x"]);
        let v = check(&h, BOUND);
        assert_eq!(v.divergent, 1);
        assert!(v.violations[0].contains("broker 3 stores other bytes"));
    }

    #[test]
    fn a_replica_missing_records_below_the_high_water_mark_is_divergent() {
        let mut h = healthy();
        p0(&mut h).replicas[1].batches.pop();
        let v = check(&h, BOUND);
        assert_eq!(v.divergent, 1);
        assert!(v.violations[0].contains("broker 2 lacks part of it"));
    }

    #[test]
    fn replicas_are_compared_only_from_the_largest_log_start() {
        let mut h = healthy();
        // Broker 3's first batch was deleted: it starts at 2; the others differ only below.
        let p = p0(&mut h);
        p.replicas[2].log_start_offset = 2;
        p.replicas[2].batches.remove(0);
        p.replicas[1].batches[0] = batch(0, &["z", "z"]);
        let v = check(&h, BOUND);
        assert_eq!(v.divergent, 0, "{:?}", v.violations);
    }

    #[test]
    fn a_read_record_that_vanished_is_reported() {
        let mut h = healthy();
        p0(&mut h).reads.push((3, "q".into()));
        let v = check(&h, BOUND);
        assert_eq!(v.vanished_reads, 1);
    }

    #[test]
    fn a_rolled_back_commit_is_reported() {
        let mut h = healthy();
        p0(&mut h).committed_after = 1;
        let v = check(&h, BOUND);
        assert_eq!(v.rolled_back_commits, 1);
        p0(&mut h).committed_after = -1;
        assert_eq!(check(&h, BOUND).rolled_back_commits, 1, "a lost commit");
    }

    #[test]
    fn a_late_leader_is_reported() {
        let mut h = healthy();
        h.leaders_after_heal = Some(Duration::from_secs(11));
        assert!(check(&h, BOUND).leaderless);
        h.leaders_after_heal = None;
        assert!(check(&h, BOUND).leaderless);
    }

    #[test]
    fn a_partition_whose_isr_never_recovers_is_reported() {
        let mut h = healthy();
        h.unsettled.push("chaos-1-2 leader 1 ISR [1,2]".into());
        let v = check(&h, BOUND);
        assert!(!v.ok());
        assert!(v.violations[0].contains("chaos-1-2 leader 1 ISR [1,2]"));
    }

    #[test]
    fn a_record_nobody_sent_is_reported() {
        let mut h = healthy();
        p0(&mut h).log.push((4, "ghost".into()));
        assert_eq!(check(&h, BOUND).phantoms, 1);
    }
}
