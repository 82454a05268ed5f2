//! KafkaJS 2.2.4, a pure-JavaScript client with its own protocol code, partitioner and
//! consumer-group state machine (unlike the librdkafka-based and Python clients), through
//! tests/clients/kafkajs_client.js against a 3-broker `weir cluster`: admin, producer,
//! consumer groups and error paths, one mode (and one cluster) per test so they run in
//! parallel.
//!
//! scripts/test.sh installs `kafkajs` with npm into `<target dir>/test-node/node_modules`;
//! the script finds it through NODE_PATH.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{client_script, run_with_deadline, Weir};
use crate::support::require_program;

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

/// Runs `node kafkajs_client.js <mode> <bootstrap>` and returns its stdout; panics with the
/// output unless it exits 0 and prints `OK ALL`.
fn kafkajs(mode: &str, weir: &Weir) -> String {
    require_program("node");
    let modules = node_modules();
    assert!(
        modules.join("kafkajs").join("package.json").is_file(),
        "kafkajs is not installed in {}: run scripts/test.sh, which installs it",
        modules.display()
    );
    let bootstrap = weir.bootstrap();
    let output = run_with_deadline(
        Command::new("node")
            .arg(client_script("kafkajs_client.js"))
            .args([mode, bootstrap.as_str()])
            .env("NODE_PATH", &modules)
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
        LIMIT,
    );
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
    let out = kafkajs("admin", &weir);
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
    let out = kafkajs("produce", &weir);
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
    let out = kafkajs("groups", &weir);
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
    let out = kafkajs("errors", &weir);
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
    let out = kafkajs("produce,groups,errors", &weir);
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
