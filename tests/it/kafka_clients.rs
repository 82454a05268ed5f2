//! Unmodified Kafka clients against a real `weir cluster` process on loopback: kcat, the
//! Python clients (confluent-kafka, kafka-python, aiokafka; scripts in tests/clients/),
//! KafkaJS (tests/clients/kafkajs_client.js), the rdkafka crate, a raw socket sending bad
//! input, a 3-broker cluster, kill -9 restarts, and log compaction.
//!
//! Every test starts its own broker process on free ports with its own temp data dir.

mod bad_input;
mod compaction;
mod dynamic_configs;
mod failover;
mod fetch;
mod groups;
mod idempotence;
pub mod kafkajs;
mod kcat;
mod multi_broker;
mod open_files;
mod python;
pub mod rdkafka_client;
mod restart;
mod versions;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a broker may take to print `ready`.
const STARTUP: Duration = Duration::from_secs(60);

/// A `weir cluster` process.
pub struct Weir {
    child: Option<Child>,
    args: Vec<String>,
    /// `host:port` of each broker, in id order.
    pub brokers: Vec<String>,
    /// The fault console: commands go to stdin, answers come back as stdout lines.
    console_in: Option<ChildStdin>,
    console_out: Option<mpsc::Receiver<String>>,
    /// Keeps a temp data dir alive as long as the process.
    _temp: Option<tempfile::TempDir>,
}

impl Weir {
    /// `n` brokers on free ports with a fresh data dir.
    pub fn start(n: u16) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut weir = Self::start_in(n, 0, temp.path(), &[]);
        weir._temp = Some(temp);
        weir
    }

    /// `n` brokers on free ports with a fresh data dir and extra `--set`s.
    pub fn start_with(n: u16, sets: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut weir = Self::start_in(n, 0, temp.path(), sets);
        weir._temp = Some(temp);
        weir
    }

    /// `n` brokers from `base_port` (0: free ports) on `data_dir`, with extra `--set`s.
    pub fn start_in(n: u16, base_port: u16, data_dir: &Path, sets: &[&str]) -> Self {
        let mut args = vec![
            "cluster".to_string(),
            "--brokers".into(),
            n.to_string(),
            "--base-port".into(),
            base_port.to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        for set in sets {
            args.push("--set".into());
            args.push(set.to_string());
        }
        let mut weir = Self {
            child: None,
            args,
            brokers: Vec::new(),
            console_in: None,
            console_out: None,
            _temp: None,
        };
        weir.launch();
        weir
    }

    fn launch(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(&self.args)
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir");
        let rx = crate::support::stdout_lines(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + STARTUP;
        let mut brokers = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "weir did not print `ready` within {STARTUP:?} (args {:?})",
                        self.args
                    );
                }
            };
            if line == "ready" {
                break;
            }
            // `broker <id> listening on <host:port>`
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["broker", _, "listening", "on", addr] = words.as_slice() {
                brokers.push(addr.to_string());
            }
        }
        assert!(!brokers.is_empty(), "weir printed no broker address");
        self.brokers = brokers;
        self.console_in = child.stdin.take();
        self.console_out = Some(rx);
        self.child = Some(child);
    }

    /// Sends one fault-console command and returns its one-line answer (`ok ...`,
    /// `error ...`, or the `status` JSON).
    pub fn console(&mut self, command: &str) -> String {
        let stdin = self.console_in.as_mut().expect("running");
        writeln!(stdin, "{command}").expect("write to the console");
        stdin.flush().expect("flush the console");
        self.console_out
            .as_ref()
            .expect("running")
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no answer to `{command}` within 60 s"))
    }

    /// The cluster's `status`, parsed.
    pub fn status(&mut self) -> serde_json::Value {
        let line = self.console("status");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("status is not JSON ({e}): {line}"))
    }

    /// The process id (for memory checks).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn bootstrap(&self) -> String {
        self.brokers.join(",")
    }

    /// SIGKILL: no flush, no clean-shutdown marker (the page cache survives).
    pub fn kill9(&mut self) {
        self.console_in = None;
        self.console_out = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same arguments (and so the same ports when they were
    /// fixed, and the same data dir).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// SIGTERM and wait for a clean exit. The console's stdin stays open and silent meanwhile,
    /// as a terminal's would: the stop must not wait for a line that never comes.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child by pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = wait_with_deadline(&mut child, Duration::from_secs(30));
        self.console_in = None;
        status.expect("weir did not exit after SIGTERM")
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion within `limit`, capturing its output.
pub fn run_with_deadline(command: &mut Command, limit: Duration) -> Output {
    let what = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            // SAFETY: killing the child we spawned, by its pid.
            unsafe {
                libc::kill(id as i32, libc::SIGKILL);
            }
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

/// The path of a client script.
pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("clients")
        .join(name)
}

/// Runs `python3 tests/clients/<script> <args>`; panics with its output unless it exits 0
/// and prints `OK ALL`. Returns stdout.
pub fn python(script: &str, args: &[&str], limit: Duration) -> String {
    crate::support::require_program("python3");
    let output = run_with_deadline(
        Command::new("python3")
            .arg(client_script(script))
            .args(args),
        limit,
    );
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK ALL"),
        "{script} {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}
