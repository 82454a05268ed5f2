//! Replica placement for new topics and added partitions: Kafka's `AdminUtils`
//! assignment, so a topic created on weir is laid out as Kafka would lay it out.
//!
//! Rack-unaware: the first replica of partition `p` goes to broker `(p + start) % n`
//! (round-robin from a random start), and the followers are shifted by an amount that grows
//! every `n` partitions, so followers of one broker's leaders spread over the others.
//! Rack-aware (every broker has `broker.rack`): the same walk over a rack-alternating broker
//! list, skipping a broker whose rack (or itself) already holds a replica while another
//! rack (broker) has none.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

/// Why a placement cannot be made; both map to INVALID_REPLICATION_FACTOR / INVALID_PARTITIONS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor must be larger than 0, got {0}")]
    ReplicationFactorTooSmall(i32),
    #[error("replication factor: {requested} larger than available brokers: {available}")]
    ReplicationFactorTooLarge { requested: i32, available: usize },
    #[error("number of partitions must be larger than 0, got {0}")]
    NoPartitions(i32),
    #[error(
        "not all brokers have rack information; rack-aware assignment needs it on every broker"
    )]
    PartialRackInfo,
}

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementBroker {
    pub id: i32,
    pub rack: Option<String>,
}

/// Where placement starts. Kafka picks both at random; tests fix them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartPoint {
    /// Index into the (sorted or rack-alternated) broker list of partition 0's first replica.
    pub start_index: usize,
    /// Initial follower shift.
    pub replica_shift: usize,
}

impl StartPoint {
    pub fn random(brokers: usize) -> Self {
        let mut rng = rand::thread_rng();
        Self {
            start_index: rng.gen_range(0..brokers.max(1)),
            replica_shift: rng.gen_range(0..brokers.max(1)),
        }
    }
}

/// Assigns `partitions` partitions (numbered from `first_partition`) with `replication_factor`
/// replicas each; the first replica of each list is its preferred leader.
pub fn assign_replicas(
    brokers: &[PlacementBroker],
    partitions: i32,
    replication_factor: i32,
    first_partition: i32,
    start: Option<StartPoint>,
) -> Result<BTreeMap<i32, Vec<i32>>, PlacementError> {
    if partitions <= 0 {
        return Err(PlacementError::NoPartitions(partitions));
    }
    if replication_factor <= 0 {
        return Err(PlacementError::ReplicationFactorTooSmall(
            replication_factor,
        ));
    }
    if replication_factor as usize > brokers.len() {
        return Err(PlacementError::ReplicationFactorTooLarge {
            requested: replication_factor,
            available: brokers.len(),
        });
    }
    let with_rack = brokers.iter().filter(|b| b.rack.is_some()).count();
    if with_rack == 0 {
        let mut ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        let start = start.unwrap_or_else(|| StartPoint::random(ids.len()));
        Ok(rack_unaware(
            &ids,
            partitions,
            replication_factor,
            first_partition,
            start,
        ))
    } else if with_rack == brokers.len() {
        let arranged = rack_alternated(brokers);
        let start = start.unwrap_or_else(|| StartPoint::random(arranged.len()));
        Ok(rack_aware(
            brokers,
            &arranged,
            partitions,
            replication_factor,
            first_partition,
            start,
        ))
    } else {
        Err(PlacementError::PartialRackInfo)
    }
}

/// Kafka's `replicaIndex`: the `j`-th follower of a partition whose leader sits at `first`.
fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    let shift = 1 + (shift + j) % (n - 1);
    (first + shift) % n
}

fn rack_unaware(
    ids: &[i32],
    partitions: i32,
    rf: i32,
    first_partition: i32,
    start: StartPoint,
) -> BTreeMap<i32, Vec<i32>> {
    let n = ids.len();
    let mut out = BTreeMap::new();
    let mut shift = start.replica_shift;
    for partition in first_partition.max(0)..first_partition.max(0) + partitions {
        if partition > 0 && (partition as usize).is_multiple_of(n) {
            shift += 1;
        }
        let first = (partition as usize + start.start_index) % n;
        let mut replicas = vec![ids[first]];
        for j in 0..(rf as usize - 1) {
            replicas.push(ids[replica_index(first, shift, j, n)]);
        }
        out.insert(partition, replicas);
    }
    out
}

/// Brokers ordered so that consecutive ones sit on different racks: racks sorted, brokers in
/// each rack sorted, taken one per rack in turn.
fn rack_alternated(brokers: &[PlacementBroker]) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.as_deref().unwrap_or(""))
            .or_default()
            .push(b.id);
    }
    let mut iters: Vec<_> = by_rack
        .into_values()
        .map(|mut ids| {
            ids.sort_unstable();
            ids.into_iter()
        })
        .collect();
    let mut out = Vec::with_capacity(brokers.len());
    let mut rack = 0;
    while out.len() < brokers.len() {
        if let Some(id) = iters[rack].next() {
            out.push(id);
        }
        rack = (rack + 1) % iters.len();
    }
    out
}

fn rack_aware(
    brokers: &[PlacementBroker],
    arranged: &[i32],
    partitions: i32,
    rf: i32,
    first_partition: i32,
    start: StartPoint,
) -> BTreeMap<i32, Vec<i32>> {
    let rack_of: BTreeMap<i32, &str> = brokers
        .iter()
        .map(|b| (b.id, b.rack.as_deref().unwrap_or("")))
        .collect();
    let num_racks = rack_of.values().collect::<BTreeSet<_>>().len();
    let n = arranged.len();
    let mut out = BTreeMap::new();
    let mut shift = start.replica_shift;
    for partition in first_partition.max(0)..first_partition.max(0) + partitions {
        if partition > 0 && (partition as usize).is_multiple_of(n) {
            shift += 1;
        }
        let first = (partition as usize + start.start_index) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks_used: BTreeSet<&str> = BTreeSet::from([rack_of[&leader]]);
        let mut brokers_used: BTreeSet<i32> = BTreeSet::from([leader]);
        let mut k = 0;
        for _ in 0..(rf as usize - 1) {
            loop {
                let broker = arranged[replica_index(first, shift * num_racks, k, n)];
                let rack = rack_of[&broker];
                k += 1;
                let rack_ok = !racks_used.contains(rack) || racks_used.len() == num_racks;
                let broker_ok = !brokers_used.contains(&broker) || brokers_used.len() == n;
                if rack_ok && broker_ok {
                    replicas.push(broker);
                    racks_used.insert(rack);
                    brokers_used.insert(broker);
                    break;
                }
            }
        }
        out.insert(partition, replicas);
    }
    out
}

/// The start point that continues an existing topic's layout when partitions are added
/// (Kafka's `addPartitions`: start at partition 0's preferred leader).
pub fn continuation_start(
    brokers: &[PlacementBroker],
    partition0_replicas: &[i32],
) -> Option<StartPoint> {
    let mut ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    let leader = *partition0_replicas.first()?;
    let index = ids.iter().position(|&id| id == leader)?;
    Some(StartPoint {
        start_index: index,
        replica_shift: StartPoint::random(ids.len()).replica_shift,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<PlacementBroker> {
        ids.iter()
            .map(|&id| PlacementBroker { id, rack: None })
            .collect()
    }

    #[test]
    fn rack_unaware_matches_kafkas_layout_for_a_fixed_start() {
        // Kafka's AdminRackAwareTest/AdminTest expectation for brokers 0..4, 10 partitions,
        // RF 3, fixed start index 0 and shift 0.
        let got = assign_replicas(
            &brokers(&[0, 1, 2, 3, 4]),
            10,
            3,
            0,
            Some(StartPoint {
                start_index: 0,
                replica_shift: 0,
            }),
        )
        .unwrap();
        let expected: BTreeMap<i32, Vec<i32>> = [
            (0, vec![0, 1, 2]),
            (1, vec![1, 2, 3]),
            (2, vec![2, 3, 4]),
            (3, vec![3, 4, 0]),
            (4, vec![4, 0, 1]),
            (5, vec![0, 2, 3]),
            (6, vec![1, 3, 4]),
            (7, vec![2, 4, 0]),
            (8, vec![3, 0, 1]),
            (9, vec![4, 1, 2]),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn every_partition_gets_distinct_replicas_and_leaders_spread_evenly() {
        for n in 1..=6 {
            for rf in 1..=n {
                let ids: Vec<i32> = (1..=n).collect();
                let got = assign_replicas(&brokers(&ids), 12, rf, 0, None).unwrap();
                let mut leaders = BTreeMap::new();
                for replicas in got.values() {
                    let distinct: BTreeSet<_> = replicas.iter().collect();
                    assert_eq!(distinct.len(), rf as usize, "{replicas:?}");
                    *leaders.entry(replicas[0]).or_insert(0) += 1;
                }
                let (min, max) = (
                    leaders.values().min().unwrap(),
                    leaders.values().max().unwrap(),
                );
                assert!(max - min <= 1, "leaders unbalanced for n={n}: {leaders:?}");
            }
        }
    }

    #[test]
    fn too_large_a_replication_factor_is_refused() {
        let err = assign_replicas(&brokers(&[1, 2]), 3, 3, 0, None).unwrap_err();
        assert_eq!(
            err,
            PlacementError::ReplicationFactorTooLarge {
                requested: 3,
                available: 2
            }
        );
        assert!(assign_replicas(&brokers(&[1]), 0, 1, 0, None).is_err());
        assert!(assign_replicas(&brokers(&[1]), 1, 0, 0, None).is_err());
    }

    #[test]
    fn rack_aware_placement_puts_each_replica_on_another_rack() {
        let bs = vec![
            PlacementBroker {
                id: 0,
                rack: Some("a".into()),
            },
            PlacementBroker {
                id: 1,
                rack: Some("b".into()),
            },
            PlacementBroker {
                id: 2,
                rack: Some("c".into()),
            },
            PlacementBroker {
                id: 3,
                rack: Some("a".into()),
            },
            PlacementBroker {
                id: 4,
                rack: Some("b".into()),
            },
            PlacementBroker {
                id: 5,
                rack: Some("c".into()),
            },
        ];
        let got = assign_replicas(&bs, 12, 3, 0, None).unwrap();
        for replicas in got.values() {
            let racks: BTreeSet<_> = replicas
                .iter()
                .map(|id| bs[*id as usize].rack.clone())
                .collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn rack_alternation_interleaves_racks() {
        let bs = vec![
            PlacementBroker {
                id: 0,
                rack: Some("a".into()),
            },
            PlacementBroker {
                id: 1,
                rack: Some("a".into()),
            },
            PlacementBroker {
                id: 2,
                rack: Some("b".into()),
            },
            PlacementBroker {
                id: 3,
                rack: Some("c".into()),
            },
            PlacementBroker {
                id: 4,
                rack: Some("b".into()),
            },
        ];
        assert_eq!(rack_alternated(&bs), vec![0, 2, 3, 1, 4]);
    }

    #[test]
    fn partial_rack_information_is_refused() {
        let bs = vec![
            PlacementBroker {
                id: 0,
                rack: Some("a".into()),
            },
            PlacementBroker { id: 1, rack: None },
        ];
        assert_eq!(
            assign_replicas(&bs, 1, 1, 0, None),
            Err(PlacementError::PartialRackInfo)
        );
    }

    #[test]
    fn added_partitions_continue_numbering() {
        let got = assign_replicas(
            &brokers(&[1, 2, 3]),
            2,
            2,
            6,
            continuation_start(&brokers(&[1, 2, 3]), &[2, 3]),
        )
        .unwrap();
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![6, 7]);
        // Partition 6 continues the round-robin that started at broker 2 for partition 0.
        assert_eq!(got[&6][0], 2);
        assert_eq!(got[&7][0], 3);
    }
}
