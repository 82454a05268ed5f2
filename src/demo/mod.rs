//! `weir demo NAME [--out DIR]`: the seed's flows, run for real. Each scenario starts an
//! in-process 3-broker cluster, records a message trace while it acts (as a client, an admin,
//! or the fault console would), and prints a short narrative in the seed's terms, noting
//! where Kafka's real behaviour differs from the seed's simplification. It writes
//! `DIR/NAME.jsonl` (the trace), `DIR/NAME.mmd` (its Mermaid sequence diagram) and
//! `DIR/NAME.md` (narrative and diagram), then checks that the diagram holds the messages
//! the seed's case names, in order ([`expect`]); a run whose diagram misses one fails.
//!
//! | demo | the seed's flow |
//! |---|---|
//! | `startup` | Cases 1–2: registration, `/controller` election, UpdateMetadata before serving |
//! | `create-topic` | Case 3: CreateTopics forwarded to the controller, placement, state znodes, LeaderAndIsr, UpdateMetadata |
//! | `broker-failure` | Case 4, Step 14.7: a leader's broker dies, the controller elects from the ISR |
//! | `producer-routing` | Cases 5–6: metadata, partitioning, NOT_LEADER_OR_FOLLOWER, refresh, retry |
//! | `high-water-mark` | Steps 15.1–15.5: a record on the leader only is invisible until the ISR has it |
//! | `acks` | Step 16: acks 0, 1 and all side by side, and the window in which acks=1 loses a record |
//! | `rebalance` | Steps 17.7 and 17.10: a member joins, a member dies, partitions move, offsets resume |
//!
//! `weir demo all --out docs/flows` regenerates the diagrams in the docs (`scripts/flows.sh`).

pub mod client;
pub mod expect;
pub mod member;
mod scenarios;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::LocalBoxFuture;

use crate::cluster::status::{ClusterStatus, PartitionStatus};
use crate::cluster::Cluster;
use crate::trace::event::actor;
use crate::trace::render::{self, Line, View};
use crate::trace::{Event, Recording, TraceConfig};

/// How long a scenario waits for the cluster to reach a state before giving up.
const DEADLINE: Duration = Duration::from_secs(60);

/// One scenario.
pub struct Demo {
    pub name: &'static str,
    pub title: &'static str,
    /// Which part of the seed it runs.
    pub seed: &'static str,
    /// Broker settings on top of the demo defaults ([`DEMO_SETTINGS`]).
    pub sets: &'static [(&'static str, &'static str)],
    /// Record from before the cluster starts (else from when the scenario says so).
    pub trace_from_start: bool,
    /// The messages the case names, in order ([`expect`] patterns).
    pub expect: &'static [&'static str],
    /// Requests left out of the drawn diagram with their answers (still in the trace), to
    /// keep it readable: globs over the request's label (`create /config*`).
    pub hide: &'static [&'static str],
    pub run: for<'a> fn(&'a mut Stage) -> LocalBoxFuture<'a, anyhow::Result<()>>,
}

/// Settings every demo cluster runs with: short coordination sessions so a crashed broker is
/// noticed within seconds, and a one-partition offsets topic so group traffic stays readable
/// (Kafka's default is 50 partitions).
pub const DEMO_SETTINGS: &[(&str, &str)] = &[
    ("zookeeper.session.timeout.ms", "3000"),
    ("offsets.topic.num.partitions", "1"),
    ("group.initial.rebalance.delay.ms", "0"),
    ("group.min.session.timeout.ms", "500"),
];

/// Requests every demo leaves out of its diagram (with their answers): the top-level znodes
/// each starting broker makes sure exist (mostly answered NodeExists), and the cluster id.
pub const BOOT_NOISE: &[&str] = &[
    "create /brokers",
    "create /brokers/topics",
    "create /brokers/seqid",
    "create /config*",
    "create /admin*",
    "create /isr_change_notification",
    "create /latest_producer_id_block",
    "create /log_dir_event_notification",
    "create /cluster*",
    "getData /cluster/id",
];

/// Every demo, in the seed's order.
pub fn all() -> &'static [Demo] {
    scenarios::ALL
}

pub fn find(name: &str) -> Option<&'static Demo> {
    all().iter().find(|d| d.name == name)
}

/// What a scenario works with: the cluster, the trace, and the story it tells.
pub struct Stage {
    pub cluster: Cluster,
    trace_path: PathBuf,
    recording: Option<Recording>,
    /// Narrative lines, in the seed's terms.
    pub story: Vec<String>,
    /// Where Kafka's real behaviour differs from the seed.
    pub kafka: Vec<String>,
    /// Roles the expectations name (`controller` → `b2`).
    pub roles: BTreeMap<String, String>,
    /// Print the story as it unfolds.
    echo: bool,
}

impl Stage {
    /// Starts recording now (a no-op if already recording).
    pub fn start_trace(&mut self) -> anyhow::Result<()> {
        if self.recording.is_none() {
            self.recording = Some(crate::trace::start(TraceConfig::new(&self.trace_path))?);
        }
        Ok(())
    }

    /// One step of the story.
    pub fn say(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.echo {
            println!("{}. {text}", self.story.len() + 1);
        }
        self.story.push(text);
    }

    /// Where Kafka does more than (or differs from) the seed's account.
    pub fn kafka(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.echo {
            println!("   Kafka: {text}");
        }
        self.kafka.push(text);
    }

    /// Binds a role the expectations name to broker `id`.
    pub fn role(&mut self, name: &str, broker: i32) {
        self.roles.insert(name.to_string(), actor::broker(broker));
    }

    pub fn status(&self) -> ClusterStatus {
        self.cluster.status()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionStatus> {
        self.status()
            .partitions
            .into_iter()
            .find(|p| p.topic == topic && p.partition == partition)
    }

    pub fn addr(&self, broker: i32) -> anyhow::Result<SocketAddr> {
        Ok(self
            .cluster
            .broker(broker)
            .with_context(|| format!("there is no broker {broker}"))?
            .addr)
    }

    pub fn addrs(&self) -> BTreeMap<i32, SocketAddr> {
        self.cluster
            .brokers()
            .iter()
            .map(|b| (b.id, b.addr))
            .collect()
    }

    /// A client of broker `broker` named `client_id` in the diagram.
    pub async fn client(&self, broker: i32, client_id: &str) -> anyhow::Result<client::Client> {
        client::Client::connect(self.addr(broker)?, client_id).await
    }

    /// Waits until `f` finds what it looks for in the cluster's status.
    pub async fn wait<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&ClusterStatus) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = f(&self.status()) {
                return Ok(v);
            }
            anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until partition `p` of `topic` satisfies `f`.
    pub async fn wait_partition(
        &self,
        topic: &str,
        p: i32,
        what: &str,
        f: impl Fn(&PartitionStatus) -> bool,
    ) -> anyhow::Result<PartitionStatus> {
        self.wait(what, |s| {
            s.partitions
                .iter()
                .find(|x| x.topic == topic && x.partition == p && f(x))
                .cloned()
        })
        .await
    }

    /// Creates `topic` through the controller — `partitions` partitions of 3 replicas, or the
    /// given replica lists — and waits until every partition has a leader and a full ISR.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        assignment: Option<&[Vec<i32>]>,
    ) -> anyhow::Result<Vec<PartitionStatus>> {
        let controller = self.controller().await?;
        let mut admin = self.client(controller, "admin").await?;
        let (count, rf) = match assignment {
            Some(a) => (a.len() as i32, -1),
            None => (partitions, 3),
        };
        let code = admin
            .create_topic(
                topic,
                if assignment.is_some() { -1 } else { count },
                rf,
                assignment,
            )
            .await?;
        anyhow::ensure!(code == 0, "creating {topic}: error {code}");
        let mut states = Vec::new();
        for p in 0..count {
            states.push(
                self.wait_partition(topic, p, "a leader and a full ISR", |x| {
                    x.leader >= 0 && x.isr.len() == x.replicas.len()
                })
                .await?,
            );
        }
        Ok(states)
    }

    /// The controller, once the cluster agrees on one.
    pub async fn controller(&self) -> anyhow::Result<i32> {
        self.wait("a controller", |s| {
            (s.controller >= 0).then_some(s.controller)
        })
        .await
    }
}

/// What a finished demo produced.
pub struct Report {
    pub demo: &'static Demo,
    pub story: Vec<String>,
    pub kafka: Vec<String>,
    pub roles: BTreeMap<String, String>,
    pub events: Vec<Event>,
    /// The diagram's lines (the demo's hidden kinds left out, chatter folded).
    pub lines: Vec<Line>,
    pub mermaid: String,
    pub trace_path: PathBuf,
    pub diagram_path: PathBuf,
    pub markdown_path: PathBuf,
    /// Whether the diagram holds the messages the case names, in order.
    pub check: Result<(), String>,
}

fn unique_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "weir-demo-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// Runs `demo` inside the running actix System, writing its files to `out`.
pub async fn run(demo: &'static Demo, out: &Path, echo: bool) -> anyhow::Result<Report> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let trace_path = out.join(format!("{}.jsonl", demo.name));
    let data = unique_dir(demo.name);
    let mut recording = None;
    if demo.trace_from_start {
        recording = Some(crate::trace::start(TraceConfig::new(&trace_path))?);
    }
    let mut builder = Cluster::builder()
        .brokers(3)
        .base_port(0)
        .data_dir(&data)
        .worker_threads(2);
    for (k, v) in DEMO_SETTINGS.iter().chain(demo.sets) {
        builder = builder.set(*k, *v);
    }
    if echo {
        println!("{}: {} ({})", demo.name, demo.title, demo.seed);
    }
    let cluster = builder.start().await?;
    let mut stage = Stage {
        cluster,
        trace_path: trace_path.clone(),
        recording,
        story: Vec::new(),
        kafka: Vec::new(),
        roles: BTreeMap::new(),
        echo,
    };
    let outcome = (demo.run)(&mut stage).await;
    let Stage {
        cluster,
        recording,
        story,
        kafka,
        roles,
        ..
    } = stage;
    let summary = recording.map(|r| r.finish()).transpose()?;
    if let Err(e) = cluster.shutdown().await {
        tracing::warn!(error = %e, "demo cluster shut down uncleanly");
    }
    let _ = std::fs::remove_dir_all(&data);
    outcome.with_context(|| format!("demo {}", demo.name))?;
    anyhow::ensure!(summary.is_some(), "demo {} recorded no trace", demo.name);

    let events = crate::trace::read_file(&trace_path)?;
    let view = View {
        fold: true,
        ..View::default()
    };
    let hidden: Vec<&str> = BOOT_NOISE.iter().chain(demo.hide).copied().collect();
    let selected = hide(render::select(&events, &view), &hidden);
    let lines = render::lines(&selected, true);
    let mermaid = render::mermaid(&lines);
    let check = expect::check(&lines, demo.expect, &roles);
    let diagram_path = out.join(format!("{}.mmd", demo.name));
    std::fs::write(&diagram_path, &mermaid)
        .with_context(|| format!("writing {}", diagram_path.display()))?;
    let report = Report {
        demo,
        story,
        kafka,
        roles,
        events,
        lines,
        mermaid,
        trace_path,
        diagram_path,
        markdown_path: out.join(format!("{}.md", demo.name)),
        check,
    };
    std::fs::write(&report.markdown_path, markdown(&report))
        .with_context(|| format!("writing {}", report.markdown_path.display()))?;
    Ok(report)
}

/// `events` without the requests whose label matches a `hide` glob, and their answers.
fn hide(events: Vec<Event>, globs: &[&str]) -> Vec<Event> {
    let mut hidden = std::collections::HashSet::new();
    events
        .into_iter()
        .filter(|e| {
            if let Some(id) = e.reply_to {
                return !hidden.contains(&id);
            }
            let label = render::label(e);
            let hide = globs.iter().any(|g| expect::glob(g, &label));
            if let (true, Some(id)) = (hide, e.id) {
                hidden.insert(id);
            }
            !hide
        })
        .collect()
}

/// The page `docs/flows/NAME.md` holds.
pub fn markdown(r: &Report) -> String {
    let d = r.demo;
    let mut md = String::new();
    let _ = writeln!(md, "# `{}`: {}\n", d.name, d.title);
    let _ = writeln!(
        md,
        "The seed's {}, run for real: `weir demo {}` on an in-process 3-broker cluster. \
         Generated from a real run by `scripts/flows.sh`; the trace is `{}.jsonl` \
         (`weir trace render {}.jsonl --format text` prints it).\n",
        d.seed, d.name, d.name, d.name
    );
    let _ = writeln!(md, "## What happened\n");
    for (i, s) in r.story.iter().enumerate() {
        let _ = writeln!(md, "{}. {s}", i + 1);
    }
    if !r.kafka.is_empty() {
        let _ = writeln!(md, "\n## Where Kafka differs from the seed\n");
        for k in &r.kafka {
            let _ = writeln!(md, "- {k}");
        }
    }
    let _ = write!(
        md,
        "\n## The messages the case names\n\nChecked in this order by the test suite \
         (`tests/it/demos.rs`) on every run"
    );
    if !r.roles.is_empty() {
        let roles: Vec<String> = r
            .roles
            .iter()
            .map(|(k, v)| format!("`@{k}` = {v}"))
            .collect();
        let _ = write!(md, "; in this run {}", roles.join(", "));
    }
    let _ = writeln!(md, ":\n");
    for e in d.expect {
        let _ = writeln!(md, "- `{e}`");
    }
    let _ = writeln!(md, "\n## Sequence diagram\n");
    let hidden: Vec<&str> = BOOT_NOISE.iter().chain(d.hide).copied().collect();
    let _ = writeln!(
        md,
        "Left out for readability, with their answers (still in the trace): `{}`. Repeated \
         fetches and heartbeats are folded into one line with a count.\n",
        hidden.join("`, `")
    );
    let _ = writeln!(md, "```mermaid\n{}```", r.mermaid);
    md
}

/// `weir demo` arguments.
#[derive(Debug, clap::Args, Clone)]
pub struct DemoArgs {
    /// A demo (startup, create-topic, broker-failure, producer-routing, high-water-mark,
    /// acks, rebalance), `all`, or `list`.
    pub name: String,
    /// Where the trace, the diagram and the page go.
    #[arg(long, default_value = "weir-demo")]
    pub out: PathBuf,
}

/// `weir demo`: runs one demo (or all), prints the narrative and where the files are.
pub fn main(args: DemoArgs) -> anyhow::Result<()> {
    if args.name == "list" {
        for d in all() {
            println!("{:<18} {} ({})", d.name, d.title, d.seed);
        }
        return Ok(());
    }
    let demos: Vec<&'static Demo> = if args.name == "all" {
        all().iter().collect()
    } else {
        vec![find(&args.name).with_context(|| {
            let names: Vec<&str> = all().iter().map(|d| d.name).collect();
            format!(
                "no demo `{}`; the demos are {}",
                args.name,
                names.join(", ")
            )
        })?]
    };
    actix_rt::System::new().block_on(async move {
        let mut failed = Vec::new();
        for demo in demos {
            let report = run(demo, &args.out, true).await?;
            println!(
                "trace: {}\ndiagram: {}\npage: {}",
                report.trace_path.display(),
                report.diagram_path.display(),
                report.markdown_path.display()
            );
            match &report.check {
                Ok(()) => println!(
                    "checked: the {} messages {} names appear in order\n",
                    demo.expect.len(),
                    demo.seed
                ),
                Err(why) => {
                    println!("check failed: {why}\n");
                    failed.push(demo.name);
                }
            }
        }
        anyhow::ensure!(
            failed.is_empty(),
            "the diagrams of {} miss messages their case names",
            failed.join(", ")
        );
        Ok(())
    })
}
