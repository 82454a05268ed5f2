//! KafkaJS 2.2.4, a pure-JavaScript client with its own protocol code, partitioner and
//! consumer-group state machine (unlike the librdkafka-based and Python clients), through
//! tests/clients/kafkajs_client.js against a 3-broker `weir cluster`: admin, producer,
//! consumer groups and error paths, one mode (and one cluster) per test so they run in
//! parallel; the same on a single broker; and a leader crash under an idempotent producer and
//! a group member.
//!
//! scripts/test.sh installs `kafkajs` with npm into `<target dir>/test-node/node_modules`;
//! the script finds it through NODE_PATH.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{client_script, run_with_deadline, Weir};
use crate::support::{require_program, stdout_lines};

/// Each mode takes 2-15 s on an idle machine; the bound leaves room for a loaded one.
const LIMIT: Duration = Duration::from_secs(90);
/// An empty group's first rebalance does not wait for more members (Kafka's default 3 s
/// would be paid by every consumer the script starts).
const FAST_GROUPS: &[&str] = &["group.initial.rebalance.delay.ms=0"];

/// `<target dir>/test-node/node_modules`, where scripts/test.sh puts kafkajs: the weir binary
/// is `<target dir>/<profile>/weir`.
fn node_modules() -> PathBuf {
    let weir = PathBuf::from(env!("CARGO_BIN_EXE_weir"));
    let target = weir
        .parent()
        .and_then(|profile| profile.parent())
        .expect("the weir binary lies in <target dir>/<profile>/");
    target.join("test-node").join("node_modules")
}

/// `node kafkajs_client.js <mode> <bootstrap>`, with kafkajs on NODE_PATH.
fn script(mode: &str, bootstrap: &str) -> Command {
    require_program("node");
    let modules = node_modules();
    assert!(
        modules.join("kafkajs").join("package.json").is_file(),
        "kafkajs is not installed in {}: run scripts/test.sh, which installs it",
        modules.display()
    );
    let mut command = Command::new("node");
    command
        .arg(client_script("kafkajs_client.js"))
        .args([mode, bootstrap])
        .env("NODE_PATH", &modules)
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    command
}

/// Runs the script in `mode` and returns its stdout; panics with the output unless it exits
/// 0 and prints `OK ALL`.
pub fn kafkajs(mode: &str, bootstrap: &str) -> String {
    let output = run_with_deadline(&mut script(mode, bootstrap), LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK ALL"),
        "kafkajs_client.js {mode} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    eprint!("{stdout}");
    stdout
}

fn expect(out: &str, checks: &[&str]) {
    for check in checks {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("OK {check}"))),
            "no `OK {check}` in\n{out}"
        );
    }
}

#[test]
fn kafkajs_admin_manages_topics_configs_offsets_and_groups() {
    let weir = Weir::start_with(3, FAST_GROUPS);
    let out = kafkajs("admin", &weir.bootstrap());
    expect(
        &out,
        &[
            "create topic validateOnly",
            "create topic (",
            "list topics",
            "fetch topic metadata",
            "describe cluster",
            "create partitions (",
            "list partition reassignments",
            "describe configs (",
            "alter configs (",
            "describe configs with synonyms",
            "fetch topic offsets (",
            "fetch topic offsets by timestamp",
            "delete records (",
            "delete records to the high-water mark",
            "list groups",
            "describe groups",
            "fetch offsets (",
            "set offsets",
            "reset offsets to earliest",
            "delete groups",
            "delete topics",
        ],
    );
}

#[test]
fn kafkajs_producer_acks_keys_headers_gzip_and_idempotence_read_back_intact() {
    let weir = Weir::start_with(3, FAST_GROUPS);
    let out = kafkajs("produce", &weir.bootstrap());
    expect(
        &out,
        &[
            "produce acks=-1",
            "produce acks=1",
            "produce acks=0",
            "keys route to one partition",
            "headers",
            "compression gzip",
            "idempotent producer",
            "read back everything",
        ],
    );
}

#[test]
fn kafkajs_group_members_share_partitions_commit_resume_seek_and_pause() {
    let weir = Weir::start_with(3, FAST_GROUPS);
    let out = kafkajs("groups", &weir.bootstrap());
    expect(
        &out,
        &[
            "first member joins, gets every partition and commits what it read",
            "rebalance splits the partitions between both members",
            "each record consumed once by the group",
            "commits reach the coordinator",
            "a restarted consumer resumes from the committed offsets",
            "seek",
            "pause and resume",
        ],
    );
}

#[test]
fn kafkajs_sees_kafkas_error_codes() {
    let weir = Weir::start_with(3, FAST_GROUPS);
    let out = kafkajs("errors", &weir.bootstrap());
    expect(
        &out,
        &[
            "produce to a missing topic without auto-creation: UNKNOWN_TOPIC_OR_PARTITION",
            "produce with acks=2: INVALID_REQUIRED_ACKS",
            "produce a record above max.message.bytes",
            "a consumer seeking past the end restarts from its reset policy",
            "session timeout below group.min.session.timeout.ms: INVALID_SESSION_TIMEOUT",
            "create with replication factor above the broker count: INVALID_REPLICATION_FACTOR",
            "delete a missing topic: UNKNOWN_TOPIC_OR_PARTITION",
        ],
    );
}

#[test]
fn kafkajs_produces_and_consumes_in_groups_on_a_single_broker() {
    let weir = Weir::start_with(1, FAST_GROUPS);
    let out = kafkajs("produce,groups,errors", &weir.bootstrap());
    expect(
        &out,
        &[
            "idempotent producer",
            "read back everything",
            "each record consumed once by the group",
            "a restarted consumer resumes from the committed offsets",
            "produce to a missing topic without auto-creation: UNKNOWN_TOPIC_OR_PARTITION",
        ],
    );
}

/// The script's stdout lines until one satisfies `want`; panics after `limit`.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    limit: Duration,
    want: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = want(&line);
                seen.push(line);
                if done {
                    return;
                }
            }
            Err(_) => panic!("the script's output so far:\n{}", seen.join("\n")),
        }
    }
}

/// `acked N` lines: the number of acknowledged records.
fn acked_at_least(n: u64) -> impl Fn(&str) -> bool {
    move |line| {
        line.strip_prefix("acked ")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|acked| acked >= n)
    }
}

/// KafkaJS's own recovery paths against weir: an idempotent producer (acks=-1) keeps
/// producing while the leader of partition 0 crashes and restarts (connection errors,
/// NOT_LEADER_OR_FOLLOWER, a metadata refresh, retried sequences answered as duplicates), and
/// a group member keeps consuming (its coordinator may move). Afterwards every acknowledged
/// record is in the log exactly once and was consumed.
#[test]
fn kafkajs_idempotent_producer_and_group_ride_out_a_leader_crash() {
    let mut weir = Weir::start_with(
        3,
        &[
            "group.initial.rebalance.delay.ms=0",
            "zookeeper.session.timeout.ms=3000",
        ],
    );
    let mut child = script("failover", &weir.bootstrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let lines = stdout_lines(child.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    wait_for_line(&lines, &mut seen, LIMIT, acked_at_least(1000));
    let leader = weir.status()["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|p| p["topic"] == "kjs-failover" && p["partition"] == 0)
        .and_then(|p| p["leader"].as_i64())
        .expect("partition 0 has a leader");
    assert_eq!(
        weir.console(&format!("crash {leader}")),
        format!("ok crash {leader}")
    );
    let at_crash = seen.len();
    // Acknowledgements go on once the partitions have moved.
    wait_for_line(&lines, &mut seen, LIMIT, acked_at_least(3000));
    assert_eq!(
        weir.console(&format!("restart {leader}")),
        format!("ok restart {leader}")
    );
    wait_for_line(&lines, &mut seen, LIMIT, acked_at_least(5000));
    assert!(seen.len() > at_crash);
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "stop").expect("tell the script to stop");
    drop(stdin);
    wait_for_line(&lines, &mut seen, LIMIT, |l| {
        l == "OK ALL" || l.starts_with("FAILED") || l.starts_with("FAIL ")
    });
    let status = child.wait().expect("node exits");
    let out = seen.join("\n");
    assert!(
        status.success() && out.contains("OK ALL"),
        "the failover script failed ({status}):\n{out}"
    );
    expect(
        &out,
        &[
            "idempotent sends ride out the broker crash",
            "every acknowledged record is in the log exactly once",
            "the group member consumed every acknowledged record",
        ],
    );
}
