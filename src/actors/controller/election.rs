//! Partition leader election, as Kafka's `PartitionLeaderElectionAlgorithms` does it: the new
//! leader is the first replica in assignment order that is alive and in the ISR, so the
//! preferred (first) replica wins whenever it can. Unclean election (an out-of-ISR replica)
//! happens only when explicitly enabled, and then the ISR restarts as just that leader.

use std::collections::BTreeSet;

/// Why an election is being held; each picks among the same candidates differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionReason {
    /// The leader is gone (broker failure, new partition).
    Offline { unclean_allowed: bool },
    /// Move leadership back to the first replica (auto rebalance, ElectLeaders PREFERRED).
    Preferred,
    /// The listed brokers are shutting down under control: lead from anyone else in the ISR.
    ControlledShutdown { shutting_down: BTreeSet<i32> },
}

/// The outcome of one partition's election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elected {
    pub leader: i32,
    pub isr: Vec<i32>,
    /// True when the leader came from outside the ISR (data may have been lost).
    pub unclean: bool,
}

/// Elects a leader for one partition, or `None` when no replica may lead (the partition stays
/// offline with leader −1).
pub fn elect_leader(
    assignment: &[i32],
    isr: &[i32],
    live: &BTreeSet<i32>,
    reason: &ElectionReason,
) -> Option<Elected> {
    let live_isr: Vec<i32> = isr.iter().copied().filter(|id| live.contains(id)).collect();
    let clean = |leader: i32| Elected {
        leader,
        isr: live_isr.clone(),
        unclean: false,
    };
    match reason {
        ElectionReason::Offline { unclean_allowed } => assignment
            .iter()
            .copied()
            .find(|id| live.contains(id) && isr.contains(id))
            .map(clean)
            .or_else(|| {
                if !unclean_allowed {
                    return None;
                }
                assignment
                    .iter()
                    .copied()
                    .find(|id| live.contains(id))
                    .map(|leader| Elected {
                        leader,
                        isr: vec![leader],
                        unclean: true,
                    })
            }),
        ElectionReason::Preferred => assignment
            .first()
            .copied()
            .filter(|id| live.contains(id) && isr.contains(id))
            .map(clean),
        ElectionReason::ControlledShutdown { shutting_down } => {
            let isr: Vec<i32> = live_isr
                .iter()
                .copied()
                .filter(|id| !shutting_down.contains(id))
                .collect();
            assignment
                .iter()
                .copied()
                .find(|id| isr.contains(id))
                .map(|leader| Elected {
                    leader,
                    isr,
                    unclean: false,
                })
        }
    }
}

/// The ISR after `dead` brokers are removed, as the controller records it on broker failure:
/// dead members leave the ISR, except that the last member stays (Kafka keeps it so the
/// partition can come back cleanly when that broker returns).
pub fn isr_without(isr: &[i32], dead: &BTreeSet<i32>) -> Vec<i32> {
    let remaining: Vec<i32> = isr
        .iter()
        .copied()
        .filter(|id| !dead.contains(id))
        .collect();
    if remaining.is_empty() {
        isr.to_vec()
    } else {
        remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn offline_election_picks_first_live_isr_replica_in_assignment_order() {
        let e = elect_leader(
            &[1, 2, 3],
            &[3, 2],
            &set(&[2, 3]),
            &ElectionReason::Offline {
                unclean_allowed: false,
            },
        );
        assert_eq!(
            e,
            Some(Elected {
                leader: 2,
                isr: vec![3, 2],
                unclean: false
            })
        );
    }

    #[test]
    fn offline_election_never_picks_outside_the_isr_unless_unclean_is_enabled() {
        let live = set(&[2]);
        assert_eq!(
            elect_leader(
                &[1, 2],
                &[1],
                &live,
                &ElectionReason::Offline {
                    unclean_allowed: false
                }
            ),
            None
        );
        assert_eq!(
            elect_leader(
                &[1, 2],
                &[1],
                &live,
                &ElectionReason::Offline {
                    unclean_allowed: true
                }
            ),
            Some(Elected {
                leader: 2,
                isr: vec![2],
                unclean: true
            })
        );
    }

    #[test]
    fn preferred_election_only_moves_to_the_first_replica() {
        let live = set(&[1, 2, 3]);
        assert_eq!(
            elect_leader(&[1, 2, 3], &[2, 3, 1], &live, &ElectionReason::Preferred)
                .map(|e| e.leader),
            Some(1)
        );
        assert_eq!(
            elect_leader(&[1, 2, 3], &[2, 3], &live, &ElectionReason::Preferred),
            None
        );
    }

    #[test]
    fn controlled_shutdown_moves_leadership_off_the_stopping_broker() {
        let e = elect_leader(
            &[1, 2, 3],
            &[1, 2, 3],
            &set(&[1, 2, 3]),
            &ElectionReason::ControlledShutdown {
                shutting_down: set(&[1]),
            },
        )
        .unwrap();
        assert_eq!(e.leader, 2);
        assert_eq!(e.isr, vec![2, 3]);
    }

    #[test]
    fn the_last_isr_member_stays_in_the_isr_when_it_dies() {
        assert_eq!(isr_without(&[1, 2, 3], &set(&[2])), vec![1, 3]);
        assert_eq!(isr_without(&[2], &set(&[2])), vec![2]);
    }
}
