//! Watching a running cluster: the fault console of the real `weir cluster` binary (commands
//! on stdin, answers on stdout, each fault in the message trace), `weir trace render` on the
//! trace it wrote, and the Prometheus endpoints scraped while a partition loses a follower,
//! gets it back and fails over.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir::cluster::faults::Fault;
use weir::cluster::Cluster;
use weir::demo::client::Client;
use weir::metrics::exposition;
use weir::transport::faults::Node;

use crate::support::wait_until_async;

const DEADLINE: Duration = Duration::from_secs(60);

/// `weir cluster` with stdin and stdout piped; stdout lines arrive on a channel.
struct Console {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Console {
    fn start(args: &[&str]) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir cluster");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Console {
            child,
            stdin,
            lines,
        }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .expect("weir printed nothing in time")
    }

    /// Lines up to and including `ready`.
    fn until_ready(&self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.next_line();
            if line == "ready" {
                return seen;
            }
            seen.push(line);
        }
    }

    /// Sends one command and returns the one line that answers it.
    fn ask(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write a command");
        stdin.flush().expect("flush");
        self.next_line()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_fault_console_answers_every_line_and_each_fault_lands_in_the_trace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("trace.jsonl");
    let data = dir.path().join("data");
    let mut console = Console::start(&[
        "cluster",
        "--brokers",
        "3",
        "--base-port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--set",
        "zookeeper.session.timeout.ms=3000",
        "--ui",
        "127.0.0.1:0",
        "--ui-faults",
    ]);
    let listening = console.until_ready();
    let page = listening
        .iter()
        .find_map(|l| l.strip_prefix("console on "))
        .expect("the console's URL before `ready`")
        .to_string();
    let addrs: Vec<String> = listening
        .iter()
        .filter_map(|l| {
            l.strip_prefix("broker ")
                .and_then(|l| l.split(" listening on ").nth(1))
        })
        .map(String::from)
        .collect();
    assert_eq!(addrs.len(), 3, "{listening:?}");

    let status: serde_json::Value =
        serde_json::from_str(&console.ask("status")).expect("status is one JSON line");
    assert_eq!(status["brokers"].as_array().map(Vec::len), Some(3));
    assert!(status["controller"].as_i64().unwrap_or(-1) >= 1, "{status}");

    for command in [
        "pause 2",
        "resume 2",
        "cut 1 2",
        "cut 1>3",
        "delay 2 3 5",
        "drop 3 1 10",
    ] {
        assert_eq!(console.ask(command), format!("ok {command}"));
    }
    assert_eq!(console.ask("heal 1 2"), "ok heal 1 2");
    assert_eq!(console.ask("heal"), "ok heal");
    assert_eq!(console.ask("crash 3"), "ok crash 3");
    assert_eq!(console.ask("crash 3"), "error broker 3 is down");
    assert_eq!(console.ask("explode 1"), "error unknown command `explode`");
    assert_eq!(console.ask("resume 1"), "error broker 1 is not paused");
    let status: serde_json::Value =
        serde_json::from_str(&console.ask("status")).expect("status is one JSON line");
    assert_eq!(status["brokers"][2]["state"], "down", "{status}");

    // The browser console's fault endpoint feeds the same console (and trace).
    let body = r#"{"command":"pause 1"}"#;
    let (line, answer) = crate::ui::http(
        &page,
        &format!(
            "POST /api/fault HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(line, "HTTP/1.1 200 OK", "{answer}");
    assert!(answer.contains("ok pause 1"), "{answer}");
    let (_, status) = crate::ui::http(&page, "GET /api/status HTTP/1.1\r\n\r\n");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["brokers"][0]["state"], "paused", "{status}");

    // End of input changes nothing: the cluster keeps serving.
    drop(console.stdin.take());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        console.child.try_wait().expect("wait").is_none(),
        "weir exited at end of input"
    );
    std::net::TcpStream::connect(&addrs[0]).expect("broker 1 still accepts clients");

    // SIGTERM stops it cleanly, with a summary line.
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(console.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(status) = console.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "weir did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    assert!(console.next_line().starts_with("stopped: 3 brokers"));

    let events = weir::trace::read_file(&trace).expect("the trace");
    let faults: Vec<String> = events
        .iter()
        .filter(|e| e.cat == weir::trace::Category::Fault && e.id.is_some())
        .map(|e| {
            format!("{} {}", e.kind, e.detail.clone().unwrap_or_default())
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(
        faults,
        [
            "pause 2",
            "resume 2",
            "cut 1 2",
            "cut 1>3",
            "delay 2 3 5",
            "drop 3 1 10",
            "heal 1 2",
            "heal all links",
            "crash 3",
            "crash 3",
            "resume 1",
            "pause 1"
        ]
    );
    let refused: Vec<&str> = events
        .iter()
        .filter(|e| e.error.as_deref() == Some("REFUSED"))
        .filter_map(|e| e.detail.as_deref())
        .collect();
    assert_eq!(refused, ["broker 3 is down", "broker 1 is not paused"]);
    assert!(events.iter().any(|e| e.kind == "ControllerElected"));
    assert!(events.iter().any(|e| e.kind == "UpdateMetadata"));
    assert_eq!(events.last().map(|e| e.kind.as_str()), Some("TraceEnded"));

    let rendered = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "trace",
            "render",
            trace.to_str().unwrap(),
            "--format",
            "mermaid",
        ])
        .output()
        .expect("weir trace render");
    assert!(rendered.status.success());
    let diagram = String::from_utf8_lossy(&rendered.stdout);
    assert!(diagram.starts_with("sequenceDiagram\n"), "{diagram}");
    assert!(diagram.contains("console-)b3: crash 3"), "{diagram}");
    let text = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "trace",
            "render",
            trace.to_str().unwrap(),
            "--format",
            "text",
            "--actors",
            "console,b*",
        ])
        .output()
        .expect("weir trace render");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("console -> b2") && l.ends_with("pause 2")),
        "{text}"
    );
    assert!(
        !text.contains("coord"),
        "--actors leaves coordination out: {text}"
    );
}

/// Scrapes broker `id`'s endpoint.
async fn scrape(id: i32) -> std::collections::BTreeMap<String, f64> {
    let addr = weir::metrics::endpoint_addr(id).expect("an endpoint");
    let text = weir::metrics::endpoint::fetch(addr)
        .await
        .expect("a scrape");
    exposition::parse(&text)
}

fn value(m: &std::collections::BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[actix::test]
async fn metrics_endpoints_report_isr_changes_lag_and_a_failover_as_operators_watch_them() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::builder()
        .brokers(3)
        .base_port(0)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("metrics.port", "0")
        .set("zookeeper.session.timeout.ms", "3000")
        .set("replica.lag.time.max.ms", "1000")
        .set("offsets.topic.num.partitions", "1")
        .start()
        .await
        .expect("cluster starts");
    let controller = cluster.status().controller;
    let leader = (1..=3).find(|b| *b != controller).unwrap();
    let follower = (1..=3).find(|b| *b != controller && *b != leader).unwrap();
    let mut admin = Client::connect(cluster.broker(controller).unwrap().addr, "admin")
        .await
        .unwrap();
    assert_eq!(
        admin
            .create_topic(
                "orders",
                -1,
                -1,
                Some(&[vec![leader, follower, controller]])
            )
            .await
            .unwrap(),
        0
    );
    let full_isr = |c: &Cluster| {
        c.status()
            .partitions
            .into_iter()
            .any(|p| p.topic == "orders" && p.leader == leader && p.isr.len() == 3)
    };
    wait_until_async("a full ISR", DEADLINE, || {
        let ok = full_isr(&cluster);
        async move { ok.then_some(()) }
    })
    .await;
    let mut producer = Client::connect(cluster.broker(leader).unwrap().addr, "producer")
        .await
        .unwrap();
    for i in 0..5 {
        let v = (None, bytes::Bytes::from(format!("r{i}")));
        let r = producer
            .produce("orders", 0, -1, &[v], 10_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.error_code, 0);
    }
    // A group's committed offset 2 on the 5-record partition: lag 3.
    let bootstrap = cluster.broker(controller).unwrap().addr;
    let coordinator = wait_until_async("a group coordinator", DEADLINE, || async move {
        let mut c = Client::connect(bootstrap, "lagger").await.ok()?;
        match c.find_coordinator("lag-group").await.ok()? {
            (0, node) => Some(node),
            _ => None,
        }
    })
    .await;
    let at = cluster.broker(coordinator).unwrap().addr;
    wait_until_async("a commit", DEADLINE, || async move {
        let mut c = Client::connect(at, "lagger").await.ok()?;
        // A standalone commit (no member, generation −1), as a tool's.
        (c.commit("lag-group", -1, "", "orders", &[(0, 2)])
            .await
            .ok()?
            == 0)
            .then_some(())
    })
    .await;

    // Healthy: one active controller, offsets, request counts and bytes, lag 3. On a loaded
    // machine a follower can fall more than replica.lag.time.max.ms (1 s) behind for a
    // moment and leave the ISR; healthy is the state it comes back to.
    wait_until_async("a fully replicated leader", DEADLINE, || async {
        (value(&scrape(leader).await, "weir_under_replicated_partitions") == 0.0).then_some(())
    })
    .await;
    let scrapes = [scrape(1).await, scrape(2).await, scrape(3).await];
    let controllers: f64 = scrapes
        .iter()
        .map(|m| value(m, "weir_active_controller_count"))
        .sum();
    assert_eq!(controllers, 1.0);
    let on_leader = &scrapes[(leader - 1) as usize];
    assert_eq!(value(on_leader, "weir_under_replicated_partitions"), 0.0);
    assert_eq!(
        value(
            on_leader,
            "weir_partition_high_watermark{topic=\"orders\",partition=\"0\"}"
        ),
        5.0
    );
    assert_eq!(
        value(
            on_leader,
            "weir_partition_log_end_offset{topic=\"orders\",partition=\"0\"}"
        ),
        5.0
    );
    assert!(value(on_leader, "weir_requests_total{api=\"Produce\"}") >= 5.0);
    assert!(
        value(
            on_leader,
            "weir_request_duration_seconds_count{api=\"Produce\"}"
        ) >= 5.0
    );
    assert!(value(on_leader, "weir_topic_bytes_in_total{topic=\"orders\"}") > 0.0);
    let lag_key = "weir_consumer_group_lag{group=\"lag-group\",topic=\"orders\",partition=\"0\"}";
    wait_until_async("the group's lag", DEADLINE, || async {
        (value(&scrape(coordinator).await, lag_key) == 3.0).then_some(())
    })
    .await;

    // A follower falls out of the ISR (the leader shrinks it), then comes back (expands).
    cluster
        .inject(Fault::Cut {
            from: Node::Broker(follower),
            to: Node::Broker(leader),
            both: true,
        })
        .await
        .unwrap();
    // The leader only notices a lagging follower when there is something to lag behind.
    let leader_addr = cluster.broker(leader).unwrap().addr;
    wait_until_async("the ISR shrinks", DEADLINE, || async move {
        let v = (None, bytes::Bytes::from_static(b"more"));
        let mut p = Client::connect(leader_addr, "producer").await.ok()?;
        p.produce("orders", 0, 1, &[v], 10_000).await.ok()?;
        let m = scrape(leader).await;
        (value(&m, "weir_isr_shrinks_total") >= 1.0
            && value(&m, "weir_under_replicated_partitions") >= 1.0)
            .then_some(())
    })
    .await;
    cluster.inject(Fault::Heal(None)).await.unwrap();
    wait_until_async("the ISR expands", DEADLINE, || async {
        let m = scrape(leader).await;
        (value(&m, "weir_isr_expands_total") >= 1.0
            && value(&m, "weir_under_replicated_partitions") == 0.0)
            .then_some(())
    })
    .await;

    // The leader's broker dies: its endpoint goes with it; a survivor leads, under-replicated.
    cluster.crash(leader).await.unwrap();
    wait_until_async("a failover the survivors report", DEADLINE, || async {
        let new_leader = cluster
            .status()
            .partitions
            .into_iter()
            .find(|p| p.topic == "orders" && p.leader >= 0 && p.leader != leader)?
            .leader;
        let m = scrape(new_leader).await;
        let c = scrape(controller).await;
        (value(&m, "weir_under_replicated_partitions") >= 1.0
            && value(
                &m,
                "weir_partition_high_watermark{topic=\"orders\",partition=\"0\"}",
            ) >= 5.0
            && value(&c, "weir_active_controller_count") == 1.0
            && value(&c, "weir_offline_partitions_count") == 0.0)
            .then_some(())
    })
    .await;
    let dead = weir::metrics::endpoint_addr(leader).unwrap();
    assert!(
        weir::metrics::endpoint::fetch(dead).await.is_err(),
        "a crashed broker's endpoint answers nothing"
    );
    cluster.shutdown().await.unwrap();
}
