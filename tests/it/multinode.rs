//! The same brokers across processes: `weir broker` processes (the real binary, one broker
//! each, on free loopback ports) on a `weir coordinator` or a real ZooKeeper, replicating
//! over the TCP inter-broker seam, with confluent-kafka producing `acks=all` to a topic of
//! replication factor 3 throughout. Processes are SIGKILLed (a partition's leader, the
//! controller's), restarted, and stopped with SIGTERM (a controlled shutdown, in a rolling
//! restart); ZooKeeper itself is killed and restarted; in [`netns`] a broker in its own
//! network namespace is cut off. Every acknowledged record must survive, and the client must
//! see no error it could not retry.
//!
//! Each test prints what it measured (failover and controlled-shutdown times) on stderr.

mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use weir::actors::coordination::{self, CoordinationClient};

use crate::coordination::harness::{start_binary, start_zookeeper, ChildGuard};
use crate::kafka_clients::{client_script, python, run_with_deadline};
use crate::support::{free_port, require_program, stdout_lines, wait_until};

/// How long a condition may take (a failover waits for a 4 s session timeout).
const DEADLINE: Duration = Duration::from_secs(45);

/// One `weir broker` process; SIGKILLed on drop.
pub struct BrokerProcess {
    pub id: i32,
    /// `host:port` of its client listener.
    pub client: String,
    /// `host:port` of its inter-broker listener when that is a separate one.
    pub inter_broker: Option<String>,
    /// The URL of its browser console (`ui.listener`), when it serves one.
    pub console: Option<String>,
    sets: Vec<String>,
    /// A command the broker runs under (`ip netns exec NS`), if any.
    wrapper: Vec<String>,
    child: Option<Child>,
}

impl BrokerProcess {
    pub fn new(sets: Vec<String>, wrapper: Vec<String>) -> Self {
        Self {
            id: -1,
            client: String::new(),
            inter_broker: None,
            console: None,
            sets,
            wrapper,
            child: None,
        }
    }

    /// Starts the process; [`Self::wait_ready`] waits for its `ready` line.
    fn spawn(&mut self) -> mpsc::Receiver<String> {
        let binary = env!("CARGO_BIN_EXE_weir").to_string();
        let mut argv: Vec<String> = self.wrapper.clone();
        argv.push(binary);
        argv.push("broker".into());
        for set in &self.sets {
            argv.push("--set".into());
            argv.push(set.clone());
        }
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("WEIR_LOG", "warn,weir::broker_node=info,weir::cli=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir broker");
        let lines = stdout_lines(child.stdout.take().expect("piped stdout"));
        self.child = Some(child);
        lines
    }

    fn wait_ready(&mut self, lines: mpsc::Receiver<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("weir broker {:?} printed no `ready`", self.sets));
            if let Some(rest) = line.strip_prefix("broker ") {
                if let Some((id, addr)) = rest.split_once(" listening on ") {
                    self.id = id.parse().expect("broker id");
                    self.client = addr.to_string();
                }
            }
            if let Some(addr) = line.strip_prefix("inter-broker listener ") {
                self.inter_broker = Some(addr.to_string());
            }
            if let Some(url) = line.strip_prefix("console on ") {
                self.console = Some(url.to_string());
            }
            if line == "ready" {
                return;
            }
        }
    }

    pub fn start(&mut self) {
        let lines = self.spawn();
        self.wait_ready(lines);
    }

    /// SIGKILL: no controlled shutdown, no flush, the session abandoned.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a controlled shutdown); returns the exit status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        // SAFETY: a signal to our own child, by pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = wait_until("the broker to exit after SIGTERM", DEADLINE, || {
            child.try_wait().ok().flatten()
        });
        (status, started.elapsed())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts every broker at once and waits until each is ready.
pub fn start_all(brokers: &mut [BrokerProcess]) {
    let lines: Vec<_> = brokers.iter_mut().map(|b| b.spawn()).collect();
    for (b, l) in brokers.iter_mut().zip(lines) {
        b.wait_ready(l);
    }
}

/// The keys of broker `n` (1-based; its logs in `dir/broker-<n>`): the ones every broker
/// of these tests shares, then `extra`.
pub fn node_sets(
    zookeeper_connect: &str,
    dir: &Path,
    n: usize,
    extra: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut sets: Vec<String> = vec![
        format!("zookeeper.connect={zookeeper_connect}"),
        format!("log.dirs={}", dir.join(format!("broker-{n}")).display()),
        "zookeeper.session.timeout.ms=4000".into(),
        "default.replication.factor=3".into(),
        "min.insync.replicas=2".into(),
        "offsets.topic.replication.factor=3".into(),
        "offsets.topic.num.partitions=3".into(),
        "controlled.shutdown.retry.backoff.ms=500".into(),
        // Failures are found through the session; the ISR lag bound only for slow followers.
        "replica.lag.time.max.ms=10000".into(),
        "controller.socket.timeout.ms=5000".into(),
    ];
    sets.extend(extra);
    sets
}

/// Clients on PLAINTEXT, weir's typed inter-broker messages on REPLICATION.
pub fn named_listeners(host: &str, client_port: u16, replication_port: u16) -> [String; 3] {
    [
        format!(
            "listeners=PLAINTEXT://{host}:{client_port},REPLICATION://{host}:{replication_port}"
        ),
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT".into(),
        "inter.broker.listener.name=REPLICATION".into(),
    ]
}

/// What a test runs against its brokers: the clients' bootstrap list, a reader of the
/// coordination service, a metadata view, and the producer (started, and past its first
/// acknowledgements).
pub struct Workload {
    pub bootstrap: String,
    pub coordination: Coordination,
    pub view: MetadataView,
    pub producer: Producer,
}

impl Workload {
    pub fn start(brokers: &[BrokerProcess], connect: &str, topic: &str, dir: &Path) -> Self {
        let bootstrap = brokers
            .iter()
            .map(|b| b.client.clone())
            .collect::<Vec<_>>()
            .join(",");
        let coordination = Coordination::connect(connect);
        let view = MetadataView::new(&bootstrap);
        let producer = Producer::start(&bootstrap, topic, dir);
        producer.wait_progress(300, "the first acknowledgements");
        Self {
            bootstrap,
            coordination,
            view,
            producer,
        }
    }
}

/// One partition as a client's metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    pub leader: i32,
    pub isr: Vec<i32>,
}

/// Metadata through librdkafka, from whichever broker answers.
pub struct MetadataView {
    consumer: BaseConsumer,
}

impl MetadataView {
    pub fn new(bootstrap: &str) -> Self {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("topic.metadata.refresh.interval.ms", "200")
            .set("reconnect.backoff.max.ms", "200")
            // A broker cut off keeps its TCP connection silent: give up on it soon.
            .set("socket.timeout.ms", "3000")
            .create()
            .expect("metadata client");
        Self { consumer }
    }

    pub fn partitions(&self, topic: &str) -> Option<Vec<PartitionView>> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        if t.error().is_some() || t.partitions().is_empty() {
            return None;
        }
        let mut parts: Vec<PartitionView> = t
            .partitions()
            .iter()
            .map(|p| {
                let mut isr = p.isr().to_vec();
                isr.sort();
                PartitionView {
                    partition: p.id(),
                    leader: p.leader(),
                    isr,
                }
            })
            .collect();
        parts.sort_by_key(|p| p.partition);
        Some(parts)
    }

    /// Waits until every partition of `topic` satisfies `f`; returns them.
    pub fn wait(
        &self,
        topic: &str,
        what: &str,
        f: impl Fn(&PartitionView) -> bool,
    ) -> Vec<PartitionView> {
        let deadline = Instant::now() + DEADLINE;
        let mut last = None;
        loop {
            let seen = self.partitions(topic);
            if let Some(ps) = seen.as_ref().filter(|ps| ps.iter().all(&f)) {
                return ps.clone();
            }
            last = seen.or(last);
            assert!(
                Instant::now() < deadline,
                "timed out after {DEADLINE:?} waiting for {what}; last seen {last:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every partition has all of `ids` in its ISR.
    pub fn wait_full_isr(&self, topic: &str, ids: &[i32]) -> Vec<PartitionView> {
        let mut want = ids.to_vec();
        want.sort();
        self.wait(topic, "every replica back in the ISR", |p| {
            p.leader >= 0 && p.isr == want
        })
    }
}

/// The confluent-kafka producer running in the background for a whole test.
pub struct Producer {
    child: Option<Child>,
    dir: PathBuf,
    topic: String,
    bootstrap: String,
}

impl Producer {
    pub fn start(bootstrap: &str, topic: &str, dir: &Path) -> Self {
        require_program("python3");
        let out = std::fs::File::create(dir.join("producer.out")).expect("producer log");
        let child = Command::new("python3")
            .arg(client_script("multinode_client.py"))
            .args(["produce", bootstrap, topic])
            .arg(dir.join("acks"))
            .arg(dir.join("stop"))
            .arg(dir.join("errors"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start the producer");
        Self {
            child: Some(child),
            dir: dir.to_path_buf(),
            topic: topic.to_string(),
            bootstrap: bootstrap.to_string(),
        }
    }

    pub fn acknowledged(&self) -> usize {
        std::fs::read_to_string(self.dir.join("acks"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Waits until `more` records beyond those acknowledged now are acknowledged.
    pub fn wait_progress(&self, more: usize, what: &str) {
        let target = self.acknowledged() + more;
        wait_until(what, DEADLINE, || {
            (self.acknowledged() >= target).then_some(())
        });
    }

    /// Errors the client could not retry away, so far.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.join("errors")).unwrap_or_default()
    }

    /// Stops producing, waits for the outstanding acknowledgements, then checks that every
    /// acknowledged record is still stored (reading from `bootstrap`).
    pub fn stop_and_verify(mut self, bootstrap: &str) -> usize {
        std::fs::write(self.dir.join("stop"), b"").expect("stop file");
        let mut child = self.child.take().expect("running");
        let status = wait_until("the producer to finish", Duration::from_secs(150), || {
            child.try_wait().ok().flatten()
        });
        let log = std::fs::read_to_string(self.dir.join("producer.out")).unwrap_or_default();
        assert!(status.success(), "producer failed ({status}):\n{log}");
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "client errors beyond retriable ones:\n{errors}"
        );
        let acked = self.acknowledged();
        assert!(acked > 0, "nothing was acknowledged:\n{log}");
        let ack_file = self.dir.join("acks");
        python(
            "multinode_client.py",
            &["verify", bootstrap, &self.topic, ack_file.to_str().unwrap()],
            Duration::from_secs(120),
        );
        let _ = &self.bootstrap;
        acked
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A coordination client on the test's own runtime, for reading what the brokers wrote.
pub struct Coordination {
    runtime: tokio::runtime::Runtime,
    client: CoordinationClient,
}

impl Coordination {
    pub fn connect(connect: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (client, _events) = runtime
            .block_on(coordination::connect(
                Some(connect),
                Duration::from_secs(10),
                None,
            ))
            .expect("connect to the coordination service");
        Self { runtime, client }
    }

    /// The broker id in `/controller`, if any.
    pub fn controller(&self) -> Option<i32> {
        let (data, _) = self
            .runtime
            .block_on(self.client.get_data("/controller", false))
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
        v["brokerid"].as_i64().map(|id| id as i32)
    }

    /// The czxid (broker epoch) of `/brokers/ids/<id>`.
    pub fn broker_epoch(&self, id: i32) -> Option<i64> {
        self.runtime
            .block_on(self.client.exists(&format!("/brokers/ids/{id}"), false))
            .ok()?
            .map(|stat| stat.czxid)
    }

    pub fn wait_new_controller(&self, old: i32) -> i32 {
        wait_until("a new controller", DEADLINE, || {
            self.controller().filter(|c| *c != old)
        })
    }
}

/// A broker leading some partition of `topic`, other than the controller when possible.
fn a_leader_not_controlling(w: &Workload, ids: &[i32], topic: &str) -> i32 {
    let controller = w.coordination.controller().expect("a controller");
    let parts = w.view.wait_full_isr(topic, ids);
    parts
        .iter()
        .map(|p| p.leader)
        .find(|l| *l != controller)
        .unwrap_or(parts[0].leader)
}

/// Waits until no partition of `topic` is led by `gone` or has it in its ISR, as the other
/// brokers tell it.
fn wait_failed_over(brokers: &[BrokerProcess], topic: &str, gone: i32) {
    let others: Vec<&str> = brokers
        .iter()
        .filter(|b| b.id != gone)
        .map(|b| b.client.as_str())
        .collect();
    MetadataView::new(&others.join(",")).wait(topic, "every partition led by a live broker", |p| {
        p.leader >= 0 && p.leader != gone && !p.isr.contains(&gone)
    });
}

/// SIGKILLs the leader of a partition that the controller does not lead, restarts it, and
/// checks the cluster failed over and the broker came back into every ISR.
fn kill_a_leader_and_restart(brokers: &mut [BrokerProcess], w: &Workload, topic: &str) {
    let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    let victim = a_leader_not_controlling(w, &ids, topic);
    let b = brokers.iter().position(|b| b.id == victim).expect("victim");
    brokers[b].kill9();
    let killed = Instant::now();
    wait_failed_over(brokers, topic, victim);
    eprintln!(
        "multinode: SIGKILL of leader {victim}: partitions failed over in {:?}",
        killed.elapsed()
    );
    w.producer
        .wait_progress(200, "acknowledgements with the leader dead");
    let restarted = Instant::now();
    brokers[b].start();
    w.view.wait_full_isr(topic, &ids);
    eprintln!(
        "multinode: restarted broker {victim} was ready, caught up and rejoined every ISR in {:?}",
        restarted.elapsed()
    );
}

/// SIGKILLs the controller's process, waits for another broker to be elected and to move the
/// leaderships, restarts it.
fn kill_the_controller_and_restart(brokers: &mut [BrokerProcess], w: &Workload, topic: &str) {
    let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    w.view.wait_full_isr(topic, &ids);
    let controller = w.coordination.controller().expect("a controller");
    let b = brokers
        .iter()
        .position(|b| b.id == controller)
        .expect("the controller's process");
    brokers[b].kill9();
    let killed = Instant::now();
    let elected = w.coordination.wait_new_controller(controller);
    wait_failed_over(brokers, topic, controller);
    eprintln!(
        "multinode: SIGKILL of controller {controller}: broker {elected} elected and leaders moved in {:?}",
        killed.elapsed()
    );
    w.producer
        .wait_progress(200, "acknowledgements after the controller died");
    brokers[b].start();
    w.view.wait_full_isr(topic, &ids);
}

/// SIGTERM each broker in turn, restart it, wait for it to rejoin every ISR.
fn rolling_restart(brokers: &mut [BrokerProcess], w: &Workload, topic: &str) {
    let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    for broker in brokers.iter_mut() {
        w.view.wait_full_isr(topic, &ids);
        let (status, took) = broker.terminate();
        assert!(
            status.success(),
            "broker {} exited with {status}",
            broker.id
        );
        eprintln!(
            "multinode: SIGTERM of broker {}: controlled shutdown and exit in {took:?}",
            broker.id
        );
        w.producer
            .wait_progress(100, "acknowledgements during the rolling restart");
        broker.start();
    }
    w.view.wait_full_isr(topic, &ids);
}

/// What a raw connection to `addr` gets back for `bytes` before the broker closes it;
/// `None` if it stays open.
fn answer_before_close(addr: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Some(answer),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(answer),
        Err(_) => None,
    }
}

/// Garbage, an oversized frame and a peer claiming an unregistered broker id each get their
/// connection closed; the broker keeps replicating for the producer meanwhile.
fn bad_input_on_the_inter_broker_port_closes_only_that_connection(
    broker: &BrokerProcess,
    producer: &Producer,
) {
    use weir::transport::wire::{Hello, HelloReply, HANDSHAKE, MAGIC};
    let addr = broker
        .inter_broker
        .as_deref()
        .expect("a REPLICATION listener");
    assert!(answer_before_close(addr, b"\x00\x00\x00\x05garbage").is_some());
    let mut oversized = MAGIC.to_vec();
    oversized.extend(u32::MAX.to_be_bytes());
    assert!(answer_before_close(addr, &oversized).is_some());
    let mut impostor = MAGIC.to_vec();
    impostor.extend(
        HANDSHAKE
            .encode(&Hello {
                from: 99,
                broker_epoch: 1,
                to: broker.id,
            })
            .unwrap(),
    );
    let answer = answer_before_close(addr, &impostor).expect("closed");
    let reply: HelloReply = futures::executor::block_on(HANDSHAKE.read(&mut answer.as_slice()))
        .expect("a reply frame")
        .expect("a reply");
    assert!(
        matches!(&reply, HelloReply::Refused { reason } if reason.contains("not registered")),
        "{reply:?}"
    );
    producer.wait_progress(100, "acknowledgements after the bad input");
}

#[test]
fn weir_broker_processes_on_a_weir_coordinator_survive_kills_and_a_rolling_restart() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let _coordinator = runtime.block_on(start_binary(port, &dir.path().join("coordination")));
    let connect = format!("weir://127.0.0.1:{port}/weir");
    let mut brokers: Vec<BrokerProcess> = (1..=3)
        .map(|n| {
            let mut extra = vec![format!("broker.id={n}")];
            extra.extend(named_listeners("127.0.0.1", free_port(), free_port()));
            BrokerProcess::new(node_sets(&connect, dir.path(), n, extra), vec![])
        })
        .collect();
    start_all(&mut brokers);
    let w = Workload::start(&brokers, &connect, "orders", dir.path());
    bad_input_on_the_inter_broker_port_closes_only_that_connection(&brokers[0], &w.producer);

    kill_a_leader_and_restart(&mut brokers, &w, "orders");
    kill_the_controller_and_restart(&mut brokers, &w, "orders");
    rolling_restart(&mut brokers, &w, "orders");

    let acked = w.producer.stop_and_verify(&w.bootstrap);
    eprintln!("multinode: {acked} acknowledged records all survived");
}

/// KafkaJS against three `weir broker` processes in Kafka's default listener shape (one
/// PLAINTEXT listener for clients and peers) on a `weir coordinator`: produce with
/// idempotence, groups, Kafka's error codes.
#[test]
fn kafkajs_works_against_weir_broker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let _coordinator = runtime.block_on(start_binary(port, &dir.path().join("coordination")));
    let connect = format!("weir://127.0.0.1:{port}/weir");
    let mut brokers: Vec<BrokerProcess> = (1..=3)
        .map(|n| {
            let extra = [
                format!("broker.id={n}"),
                format!("listeners=PLAINTEXT://127.0.0.1:{}", free_port()),
                "group.initial.rebalance.delay.ms=0".to_string(),
            ];
            BrokerProcess::new(node_sets(&connect, dir.path(), n, extra), vec![])
        })
        .collect();
    start_all(&mut brokers);
    let bootstrap = brokers
        .iter()
        .map(|b| b.client.as_str())
        .collect::<Vec<_>>()
        .join(",");
    crate::kafka_clients::kafkajs::kafkajs("produce,groups,errors", &bootstrap);
}

/// ZooKeeper's own CLI: the data of `path` (the JSON line).
pub fn zk_get(port: u16, path: &str) -> serde_json::Value {
    let out = run_with_deadline(
        Command::new("java")
            .args([
                "-cp",
                "/usr/share/java/*",
                "org.apache.zookeeper.ZooKeeperMain",
                "-server",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .args(["get", path]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON at {path}: {stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: {e}: {line}"))
}

#[test]
fn weir_broker_processes_on_real_zookeeper_fail_over_and_outlive_a_zookeeper_restart() {
    require_program("java");
    let dir = tempfile::tempdir().unwrap();
    let zk_port = free_port();
    let mut zookeeper: Option<ChildGuard> = Some(start_zookeeper(zk_port, dir.path()));
    let connect = format!("127.0.0.1:{zk_port}/kafka");
    // Kafka's default shape: one PLAINTEXT listener shared by clients and peers, and ids
    // generated through /brokers/seqid.
    let mut brokers: Vec<BrokerProcess> = (1..=3)
        .map(|n| {
            let listener = format!("listeners=PLAINTEXT://127.0.0.1:{}", free_port());
            BrokerProcess::new(node_sets(&connect, dir.path(), n, [listener]), vec![])
        })
        .collect();
    start_all(&mut brokers);
    let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    assert!(ids.iter().all(|id| *id > 1000), "generated ids: {ids:?}");
    let w = Workload::start(&brokers, &connect, "payments", dir.path());
    w.view.wait_full_isr("payments", &ids);

    // Kafka's znodes, as ZooKeeper's own CLI reads them.
    let controller = w.coordination.controller().expect("a controller");
    let paths = [
        format!("/kafka/brokers/ids/{}", ids[0]),
        "/kafka/controller".to_string(),
        "/kafka/brokers/topics/payments".to_string(),
        "/kafka/brokers/topics/payments/partitions/0/state".to_string(),
    ];
    let reads = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| s.spawn(move || zk_get(zk_port, p)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("zk get"))
            .collect::<Vec<_>>()
    });
    assert_eq!(reads[0]["version"], 5);
    assert_eq!(
        reads[0]["endpoints"][0],
        format!("PLAINTEXT://{}", brokers[0].client)
    );
    assert_eq!(reads[1]["brokerid"], controller);
    let assignment = reads[2]["partitions"].as_object().expect("partitions");
    assert_eq!(assignment.len(), 3);
    assert!(assignment
        .values()
        .all(|r| r.as_array().unwrap().len() == 3));
    let state = &reads[3];
    assert_eq!(state["isr"].as_array().unwrap().len(), 3, "{state}");
    assert!(state["controller_epoch"].as_i64().unwrap() >= 1, "{state}");
    assert!(ids.contains(&(state["leader"].as_i64().unwrap() as i32)));

    kill_the_controller_and_restart(&mut brokers, &w, "payments");

    // ZooKeeper dies and comes back within the session timeout: every session survives (the
    // registrations keep their epochs) and nothing is lost.
    w.view.wait_full_isr("payments", &ids);
    let epochs: Vec<Option<i64>> = ids
        .iter()
        .map(|id| w.coordination.broker_epoch(*id))
        .collect();
    drop(zookeeper.take());
    let down = Instant::now();
    zookeeper = Some(start_zookeeper(zk_port, dir.path()));
    eprintln!("multinode: ZooKeeper was down for {:?}", down.elapsed());
    w.producer
        .wait_progress(300, "acknowledgements after ZooKeeper came back");
    let after: Vec<Option<i64>> = wait_until("the registrations readable again", DEADLINE, || {
        let e: Vec<Option<i64>> = ids
            .iter()
            .map(|id| w.coordination.broker_epoch(*id))
            .collect();
        e.iter().all(Option::is_some).then_some(e)
    });
    assert_eq!(
        after, epochs,
        "the brokers' sessions outlived the ZooKeeper restart"
    );
    w.view.wait_full_isr("payments", &ids);

    let acked = w.producer.stop_and_verify(&w.bootstrap);
    eprintln!("multinode: {acked} acknowledged records all survived on ZooKeeper");
    drop(zookeeper);
}

#[actix::test]
async fn controlled_shutdown_moves_every_leadership_off_a_broker_of_the_in_process_cluster() {
    use weir::broker_node::ControlledShutdownPolicy;
    use weir::cluster::Cluster;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::builder()
        .brokers(3)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("num.partitions", "6")
        .start()
        .await
        .expect("cluster");
    let mut client = weir::demo::client::Client::connect(cluster.broker(1).unwrap().addr, "test")
        .await
        .expect("connect");
    assert_eq!(client.create_topic("spread", 6, 3, None).await.unwrap(), 0);
    let led_by = |id: i32| {
        cluster
            .status()
            .partitions
            .iter()
            .filter(|p| p.topic == "spread" && p.leader == id)
            .count()
    };
    crate::support::wait_until_async("broker 2 leads a partition", DEADLINE, || {
        let n = led_by(2);
        async move { (n > 0).then_some(()) }
    })
    .await;
    let node = cluster.broker(2).unwrap().node.clone();
    let policy = ControlledShutdownPolicy {
        enabled: true,
        attempts: 3,
        backoff: Duration::from_millis(100),
    };
    let started = Instant::now();
    node.controlled_shutdown(policy)
        .await
        .expect("controlled shutdown");
    eprintln!(
        "multinode: in-process controlled shutdown took {:?}",
        started.elapsed()
    );
    crate::support::wait_until_async("broker 2 leads nothing", DEADLINE, || {
        let n = led_by(2);
        async move { (n == 0).then_some(()) }
    })
    .await;
    let status = cluster.status();
    assert!(status
        .partitions
        .iter()
        .filter(|p| p.topic == "spread")
        .all(|p| p.leader > 0 && p.leader != 2 && !p.isr.contains(&2)));
    cluster.shutdown().await.expect("clean shutdown");
}

#[test]
fn the_example_three_node_configs_load_with_every_key_known() {
    for backend in ["weir-coordinator", "zookeeper"] {
        for i in 1..=3 {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(backend)
                .join(format!("broker-{i}.properties"));
            let (config, warnings) =
                weir::config::BrokerConfig::load(Some(&path), &[]).expect("loads");
            assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
            assert_eq!(config.broker_id, i);
            assert_eq!(config.inter_broker_listener(), "REPLICATION");
            assert_eq!(config.client_listener().unwrap().port, 9091 + i as u16);
            assert!(config.zookeeper_connect.is_some());
        }
    }
}
