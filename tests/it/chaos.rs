//! `weir chaos` for real, briefly: a few rounds of seeded faults (crashes, pauses, link cuts)
//! on an in-process cluster under idempotent acks=all producers and a committing consumer,
//! and the checker finds every invariant held. (The checker's own tests, in
//! `src/chaos/checker.rs`, show it reports each kind of violation.)

use std::time::Duration;

use weir::chaos::schedule::{self, Action, FaultSet, Shape};
use weir::chaos::{self, ChaosConfig};

/// Short episodes: the CI run takes seconds.
const SHAPE: Shape = Shape {
    max_episodes: 2,
    min_hold_ms: 200,
    max_hold_ms: 700,
};

/// The first seed whose first `rounds` rounds crash, pause and cut something.
fn seed_with_crash_pause_and_cut(rounds: u32) -> u64 {
    (1..)
        .find(|seed| {
            let faults: Vec<String> = (1..=rounds)
                .flat_map(|r| schedule::plan(*seed, r, 3, 3, SHAPE).episodes)
                .flat_map(|e| e.actions)
                .map(|a| a.to_string())
                .collect();
            ["crash", "pause", "cut"]
                .iter()
                .all(|k| faults.iter().any(|f| f.starts_with(k)))
        })
        .expect("some seed")
}

#[actix::test]
async fn a_short_chaos_run_loses_duplicates_and_diverges_nothing() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let rounds = 3;
    let seed = seed_with_crash_pause_and_cut(rounds);
    let mut config = ChaosConfig::new(3, rounds, seed);
    config.shape = SHAPE;
    config.data_dir = Some(dir.path().to_path_buf());
    config.trace = false;
    config.settle = Duration::from_secs(20);
    let mut reports = Vec::new();
    let summary = chaos::run(&config, |r| reports.push(r.clone()))
        .await
        .expect("the chaos run");
    for r in &reports {
        assert!(
            r.verdict.ok(),
            "seed {seed} {}\n{}",
            chaos::round_line(r),
            r.verdict.violations.join("\n")
        );
        assert!(
            r.verdict.acked > 0,
            "round {} acknowledged nothing",
            r.round
        );
    }
    let injected: Vec<&String> = reports.iter().flat_map(|r| &r.faults).collect();
    assert!(
        injected.iter().any(|f| f.starts_with("crash")),
        "{injected:?}"
    );
    assert_eq!(summary.rounds, rounds);
    assert_eq!(summary.faults, injected.len() as u64);
    assert_eq!(
        (summary.lost, summary.duplicated, summary.divergent),
        (0, 0, 0)
    );
    assert!(summary.ok());
}

/// The first seed whose first `rounds` process rounds both kill and stop a broker.
fn process_seed_with_kill_and_stop(rounds: u32) -> u64 {
    (1..)
        .find(|seed| {
            let actions: Vec<Action> = (1..=rounds)
                .flat_map(|r| {
                    schedule::plan_with(*seed, r, 3, 3, SHAPE, FaultSet::Processes).episodes
                })
                .flat_map(|e| e.actions)
                .collect();
            actions.iter().any(|a| matches!(a, Action::Crash(_)))
                && actions.iter().any(|a| matches!(a, Action::Pause(_)))
        })
        .expect("some seed")
}

#[actix::test]
async fn a_short_chaos_run_over_processes_survives_kill_9_and_sigstop() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let rounds = 2;
    let seed = process_seed_with_kill_and_stop(rounds);
    let mut config = ChaosConfig::new(3, rounds, seed);
    config.shape = SHAPE;
    config.faults = FaultSet::Processes;
    config.weir_binary = Some(env!("CARGO_BIN_EXE_weir").into());
    config.data_dir = Some(dir.path().to_path_buf());
    config.trace = false;
    config.settle = Duration::from_secs(20);
    let mut reports = Vec::new();
    let summary = chaos::processes::run(&config, |r| reports.push(r.clone()))
        .await
        .expect("the chaos run over processes");
    for r in &reports {
        assert!(
            r.verdict.ok(),
            "seed {seed} {}\n{}",
            chaos::round_line(r),
            r.verdict.violations.join("\n")
        );
        assert!(
            r.verdict.acked > 0,
            "round {} acknowledged nothing",
            r.round
        );
    }
    let injected: Vec<&String> = reports.iter().flat_map(|r| &r.faults).collect();
    assert!(
        injected.iter().any(|f| f.starts_with("kill -9")),
        "{injected:?}"
    );
    assert_eq!(summary.faults, injected.len() as u64);
    assert_eq!(
        (
            summary.rounds,
            summary.lost,
            summary.duplicated,
            summary.divergent
        ),
        (rounds, 0, 0, 0)
    );
}

#[test]
fn weir_chaos_prints_a_line_per_round_then_the_json_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["chaos", "--rounds", "1", "--seed", "5", "--data-dir"])
        .arg(dir.path())
        .env("WEIR_LOG", "warn")
        .output()
        .expect("run weir chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("round 1 ok"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(lines[1]).expect("a JSON line");
    for key in [
        "rounds",
        "faults",
        "acked",
        "lost",
        "duplicated",
        "divergent",
        "seed",
    ] {
        assert!(json.get(key).is_some(), "{key} missing: {json}");
    }
    assert_eq!(json["rounds"], 1);
    assert_eq!(json["seed"], 5);
    assert_eq!(json["lost"], 0);
}
