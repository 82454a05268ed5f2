//! kill -9 mid-production, restart on the same log dirs and ports: every record acknowledged
//! with acks=1 before the kill is still there (a process kill leaves the page cache intact),
//! and the clients reconnect by themselves and keep producing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{client_script, python, Weir};
use crate::support::{free_port, wait_until};

/// Lines in `path` (0 when it does not exist yet): acknowledgement and event logs.
pub(super) fn ack_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Kills `survive` script runs that outlive a failed test.
pub(super) struct Script(pub(super) Child);

impl Script {
    /// Waits up to `limit` for the script to exit; panics with its stderr unless it succeeded.
    pub(super) fn finish(&mut self, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{what} did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(status.success(), "{what} failed: {err}");
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn survives_kill_9(script: &str) {
    crate::support::require_program("python3");
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut weir = Weir::start_in(1, port, &data.path().join("cluster"), &[]);
    let acks = data.path().join("acks");
    let stop = data.path().join("stop");
    let mut producer = Script(
        Command::new("python3")
            .arg(client_script(script))
            .args([
                "survive",
                &weir.bootstrap(),
                &acks.display().to_string(),
                &stop.display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the producer"),
    );

    let before = wait_until(
        "acknowledgements before the kill",
        Duration::from_secs(60),
        || {
            let n = ack_count(&acks);
            (n >= 3_000).then_some(n)
        },
    );
    weir.kill9();
    let at_kill = ack_count(&acks);
    weir.restart();
    wait_until(
        "acknowledgements after the restart",
        Duration::from_secs(90),
        || (ack_count(&acks) >= at_kill + 3_000).then_some(()),
    );
    std::fs::write(&stop, b"").unwrap();
    producer.finish(Duration::from_secs(90), &format!("{script} survive"));
    eprintln!(
        "{script}: {before} acknowledged before the kill, {at_kill} at it, {} in all",
        ack_count(&acks)
    );
    python(
        script,
        &[
            "verify-survive",
            &weir.bootstrap(),
            &acks.display().to_string(),
        ],
        Duration::from_secs(120),
    );
}

#[test]
fn confluent_kafka_acks_survive_kill_9_and_the_client_reconnects() {
    survives_kill_9("confluent_kafka_client.py");
}

#[test]
fn kafka_python_acks_survive_kill_9_and_the_client_reconnects() {
    survives_kill_9("kafka_python_client.py");
}

#[test]
fn aiokafka_acks_survive_kill_9_and_the_client_reconnects() {
    survives_kill_9("aiokafka_client.py");
}

#[test]
fn a_clean_restart_keeps_topics_and_records() {
    let data = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_in(1, 0, data.path(), &[]);
    python(
        "confluent_kafka_client.py",
        &["roundtrip", &weir.bootstrap(), "1"],
        Duration::from_secs(120),
    );
    assert!(
        weir.terminate().success(),
        "weir did not exit cleanly on SIGTERM"
    );
    assert!(
        std::fs::read_dir(data.path().join("broker-1"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("clean")),
        "no clean-shutdown marker"
    );
    let weir = Weir::start_in(1, 0, data.path(), &[]);
    // The topic is there with all its records: ListOffsets through kcat's metadata view.
    let out = super::run_with_deadline(
        Command::new("kcat").args([
            "-b",
            &weir.bootstrap(),
            "-C",
            "-t",
            "ck-roundtrip-acks1",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o\n",
        ]),
        Duration::from_secs(60),
    );
    let count = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(count, 100_000);
}
