//! The fault schedule: a pure function of (seed, round, brokers). A round is a few episodes;
//! each episode injects one fault or a combination of two, holds it while the workload runs,
//! then heals everything (resume, restart, heal links) before the next one.
//!
//! Faults name their victims by role ([`Target`]): a fixed broker, the controller, or the
//! leader of a partition. Roles are resolved against the running cluster when the episode
//! starts, so the schedule itself stays reproducible from the seed while still hitting the
//! brokers that matter (timing, and hence who leads, may differ between runs).

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Who a fault hits, resolved when the episode starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Broker(i32),
    Controller,
    /// The leader of this partition of the round's topic.
    LeaderOf(i32),
}

/// One fault of an episode. A link's second end is the broker `offset` places after the
/// first one (cyclically over the broker ids), so it always differs from the first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Crash(Target),
    Pause(Target),
    /// Both ways, or only first → second.
    Cut {
        from: Target,
        offset: i32,
        both: bool,
    },
    /// The broker's link to the coordination service.
    CutCoordination(Target),
    /// A slow link first → second (a slow follower or leader).
    Delay {
        from: Target,
        offset: i32,
        ms: u64,
    },
    /// A lossy link first → second.
    Drop {
        from: Target,
        offset: i32,
        percent: u32,
    },
    ExpireSession(Target),
}

/// Faults injected together, held for `hold_ms`, then healed.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub actions: Vec<Action>,
    pub hold_ms: u64,
}

/// One round's episodes, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundPlan {
    pub round: u32,
    pub episodes: Vec<Episode>,
}

/// Bounds on a round's shape; tests use short ones.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub max_episodes: u32,
    pub min_hold_ms: u64,
    pub max_hold_ms: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            max_episodes: 3,
            min_hold_ms: 300,
            max_hold_ms: 2_000,
        }
    }
}

/// Which faults a schedule draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultSet {
    /// Every kind: the in-process cluster can cut, slow and drop links and expire sessions.
    #[default]
    All,
    /// What signals do to processes: crash (SIGKILL, then restart) and pause (SIGSTOP, then
    /// SIGCONT), of a broker, a leader or the controller.
    Processes,
}

/// The plan of round `round` (1-based) of the run seeded `seed` on `brokers` brokers, with
/// `partitions` partitions in the round's topic.
pub fn plan(seed: u64, round: u32, brokers: u16, partitions: i32, shape: Shape) -> RoundPlan {
    plan_with(seed, round, brokers, partitions, shape, FaultSet::All)
}

/// [`plan`], drawing faults from `faults`.
pub fn plan_with(
    seed: u64,
    round: u32,
    brokers: u16,
    partitions: i32,
    shape: Shape,
    faults: FaultSet,
) -> RoundPlan {
    // SplitMix-style mixing so neighbouring (seed, round) pairs get unrelated streams.
    let mixed = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(round).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut rng = StdRng::seed_from_u64(mixed);
    let n = i32::from(brokers.max(2));
    let episodes = (0..rng.gen_range(1..=shape.max_episodes.max(1)))
        .map(|_| {
            // One fault in two episodes, a combination of two in the others.
            let count = if rng.gen_bool(0.5) { 1 } else { 2 };
            Episode {
                actions: (0..count)
                    .map(|_| match faults {
                        FaultSet::All => action(&mut rng, n, partitions),
                        FaultSet::Processes => process_action(&mut rng, n, partitions),
                    })
                    .collect(),
                hold_ms: rng
                    .gen_range(shape.min_hold_ms..=shape.max_hold_ms.max(shape.min_hold_ms)),
            }
        })
        .collect();
    RoundPlan { round, episodes }
}

fn target(rng: &mut StdRng, brokers: i32, partitions: i32) -> Target {
    match rng.gen_range(0..4) {
        0 => Target::Controller,
        1 | 2 => Target::LeaderOf(rng.gen_range(0..partitions.max(1))),
        _ => Target::Broker(rng.gen_range(1..=brokers)),
    }
}

fn action(rng: &mut StdRng, brokers: i32, partitions: i32) -> Action {
    let t = target(rng, brokers, partitions);
    let offset = rng.gen_range(1..brokers);
    match rng.gen_range(0..10) {
        0 | 1 => Action::Crash(t),
        2 => Action::Pause(t),
        3 => Action::Cut {
            from: t,
            offset,
            both: true,
        },
        4 => Action::Cut {
            from: t,
            offset,
            both: false,
        },
        5 => Action::CutCoordination(t),
        6 => Action::Delay {
            from: t,
            offset,
            ms: rng.gen_range(20..=300),
        },
        7 => Action::Drop {
            from: t,
            offset,
            percent: rng.gen_range(10..=60),
        },
        8 => Action::ExpireSession(t),
        _ => Action::Crash(Target::Controller),
    }
}

fn process_action(rng: &mut StdRng, brokers: i32, partitions: i32) -> Action {
    let t = target(rng, brokers, partitions);
    match rng.gen_range(0..5) {
        0 | 1 => Action::Crash(t),
        2 | 3 => Action::Pause(t),
        _ => Action::Crash(Target::Controller),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Broker(id) => write!(f, "{id}"),
            Target::Controller => write!(f, "controller"),
            Target::LeaderOf(p) => write!(f, "leader(p{p})"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Crash(t) => write!(f, "crash {t}"),
            Action::Pause(t) => write!(f, "pause {t}"),
            Action::Cut {
                from,
                offset,
                both: true,
            } => write!(f, "cut {from} {from}+{offset}"),
            Action::Cut { from, offset, .. } => write!(f, "cut {from}>{from}+{offset}"),
            Action::CutCoordination(t) => write!(f, "cut {t} coord"),
            Action::Delay { from, offset, ms } => write!(f, "delay {from} {from}+{offset} {ms}"),
            Action::Drop {
                from,
                offset,
                percent,
            } => write!(f, "drop {from} {from}+{offset} {percent}"),
            Action::ExpireSession(t) => write!(f, "expire-session {t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        for round in 1..=20 {
            assert_eq!(
                plan(7, round, 3, 3, Shape::default()),
                plan(7, round, 3, 3, Shape::default())
            );
        }
    }

    #[test]
    fn different_seeds_give_different_schedules() {
        let a: Vec<_> = (1..=10)
            .map(|r| plan(1, r, 3, 3, Shape::default()))
            .collect();
        let b: Vec<_> = (1..=10)
            .map(|r| plan(2, r, 3, 3, Shape::default()))
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn process_schedules_only_kill_and_pause_and_hit_the_controller() {
        let actions: Vec<Action> = (1..=100)
            .flat_map(|r| plan_with(1, r, 3, 3, Shape::default(), FaultSet::Processes).episodes)
            .flat_map(|e| e.actions)
            .collect();
        assert!(actions
            .iter()
            .all(|a| matches!(a, Action::Crash(_) | Action::Pause(_))));
        assert!(actions.contains(&Action::Crash(Target::Controller)));
        assert!(actions.iter().any(|a| matches!(a, Action::Pause(_))));
    }

    #[test]
    fn schedules_cover_every_fault_kind_and_combinations() {
        let plans: Vec<RoundPlan> = (1..=200)
            .map(|r| plan(1, r, 5, 3, Shape::default()))
            .collect();
        let actions: Vec<String> = plans
            .iter()
            .flat_map(|p| p.episodes.iter().flat_map(|e| e.actions.iter()))
            .map(|a| a.to_string())
            .collect();
        for kind in [
            "crash controller",
            "crash leader",
            "pause",
            "cut",
            "coord",
            "delay",
            "drop",
            "expire-session",
        ] {
            assert!(
                actions.iter().any(|a| a.contains(kind)),
                "no `{kind}` in 200 rounds"
            );
        }
        assert!(plans
            .iter()
            .any(|p| p.episodes.iter().any(|e| e.actions.len() == 2)));
        // A link's ends always differ.
        for p in &plans {
            for a in p.episodes.iter().flat_map(|e| e.actions.iter()) {
                if let Action::Cut { offset, .. }
                | Action::Delay { offset, .. }
                | Action::Drop { offset, .. } = a
                {
                    assert!((1..5).contains(offset), "{a}");
                }
            }
        }
    }
}
