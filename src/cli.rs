//! The `weir` command line: one binary, one subcommand per way of running weir.
//! Logs go to stderr through `tracing`; stdout carries only what scripts read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "A Kafka-compatible distributed log broker built as an actor system"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// An embedded coordination service and N brokers in one process (the main job).
    Cluster(ClusterArgs),
    /// One broker; `zookeeper.connect` names its coordination service.
    Broker(BrokerArgs),
    /// The standalone coordination service.
    Coordinator(CoordinatorArgs),
    /// Load tool: produce, consume or end-to-end through librdkafka, with records/s, MB/s
    /// and latency percentiles.
    #[cfg(feature = "perf")]
    Perf(crate::perf::PerfArgs),
    /// Load tool (not in this build: `cargo build --release --features perf`).
    #[cfg(not(feature = "perf"))]
    Perf(PerfUnavailable),
    /// The seed's flows, run on an in-process cluster with a trace and a diagram.
    Demo(crate::demo::DemoArgs),
    /// Randomized fault schedules on an in-process cluster, checked for lost, duplicated or
    /// divergent records: a line per round, then one JSON line.
    Chaos(crate::chaos::ChaosArgs),
    /// Message traces: `weir trace render FILE` draws one.
    Trace {
        #[command(subcommand)]
        command: crate::trace::command::TraceCommand,
    },
}

/// `weir perf` in a build without the `perf` feature: takes any arguments, explains.
#[cfg(not(feature = "perf"))]
#[derive(Debug, Args, Clone)]
pub struct PerfUnavailable {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Number of brokers; their ids are 1..N.
    #[arg(long, default_value_t = 3)]
    pub brokers: u16,
    /// Broker i listens on base-port + i - 1; 0 picks free ports and prints them.
    #[arg(long, default_value_t = 9092)]
    pub base_port: u16,
    /// Data directory: `D/coordination/` and `D/broker-<id>/`.
    #[arg(long, default_value = "/tmp/weir-cluster")]
    pub data_dir: PathBuf,
    /// A Kafka `.properties` file applied to every broker.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `key=value`, applied to every broker after the file; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(flatten)]
    pub trace: crate::trace::command::TraceFlags,
    /// Serve the browser console on HOST:PORT (a live view of the cluster; off unless set).
    #[arg(long, value_name = "HOST:PORT")]
    pub ui: Option<String>,
    /// Enable the console's fault buttons (crash, pause, cut, ...); read-only without it.
    #[arg(long, requires = "ui")]
    pub ui_faults: bool,
}

#[derive(Debug, Args, Clone)]
pub struct BrokerArgs {
    /// A Kafka `server.properties` file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `key=value`, applied after the file; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(flatten)]
    pub trace: crate::trace::command::TraceFlags,
}

#[derive(Debug, Args, Clone)]
pub struct CoordinatorArgs {
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub listen: String,
    #[arg(long, default_value = "/tmp/weir-coordinator")]
    pub data_dir: PathBuf,
    /// ZooKeeper's tickTime in ms: session timeouts are clamped to [2, 20] ticks
    /// (default 2000, or `WEIR_COORDINATOR_TICK_MS`).
    #[arg(long)]
    pub tick_time_ms: Option<u64>,
    /// ZooKeeper's maxClientCnxns: connections per client IP, 0 for no limit.
    #[arg(long, default_value_t = 60)]
    pub max_client_cnxns: usize,
    /// ZooKeeper's globalOutstandingLimit, per connection: requests read and not yet answered.
    #[arg(long, default_value_t = 1000)]
    pub max_outstanding: usize,
}

/// Logs to stderr; `RUST_LOG` (or `WEIR_LOG`) filters, `info` by default.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("WEIR_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Keeps freed request buffers in the allocator instead of returning them to the kernel.
///
/// A connection reads requests into buffers of up to 1 MiB that live until the append is
/// done. With glibc's defaults, the arenas of the worker threads are trimmed whenever 2 MiB
/// at their top are free, and the next requests fault the same memory back in page by page
/// (on a VM each first touch of a page also costs the host a fault). A fixed trim threshold
/// and mmap threshold keep that memory for reuse; what a broker holds is still bounded by
/// its connections' request limits.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's malloc parameters; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Raises the soft limit on open files to the hard limit, as the JVM does for Kafka
/// (HotSpot's `MaxFDLimit`, on by default): every partition replica holds its active
/// segment's `.log` open, so a broker with thousands of partitions needs more descriptors
/// than the common soft default of 1024, while the hard limit is usually far higher.
/// Returns the limit in force.
fn raise_open_file_limit() -> Option<libc::rlim_t> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    None
}

pub fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging();
    if let Some(limit) = raise_open_file_limit() {
        tracing::debug!(limit, "open file limit");
    }
    let result = match cli.command {
        Command::Cluster(args) => run_cluster(args),
        Command::Broker(args) => run_broker(args),
        Command::Coordinator(args) => run_coordinator(args),
        #[cfg(feature = "perf")]
        Command::Perf(args) => crate::perf::run(args),
        #[cfg(not(feature = "perf"))]
        Command::Perf(_) => Err(anyhow::anyhow!(
            "weir perf is not in this build; build it with `cargo build --release --features perf` (librdkafka's C build needs cmake)"
        )),
        Command::Trace { command } => crate::trace::command::run(command),
        Command::Demo(args) => crate::demo::main(args),
        Command::Chaos(args) => crate::chaos::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `weir cluster`: N brokers in this process; prints each broker's address, then `ready`;
/// answers fault commands on stdin; shuts down cleanly on Ctrl-C or SIGTERM, with a summary.
fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let mut builder = crate::cluster::Cluster::builder()
        .brokers(args.brokers)
        .base_port(args.base_port)
        .data_dir(args.data_dir.clone());
    if let Some(file) = &args.config {
        builder = builder.config_file(file.clone());
    }
    for set in &args.sets {
        let (key, value) = crate::config::parse_set(set)?;
        builder = builder.set(key, value);
    }
    let recording = args.trace.start()?;
    actix_rt::System::new().block_on(async move {
        let mut cluster = builder.start().await?;
        let ui = match &args.ui {
            Some(listen) => Some(crate::ui::start(listen, args.ui_faults, "cluster").await?),
            None => None,
        };
        {
            let mut out = std::io::stdout().lock();
            for b in cluster.brokers() {
                writeln!(out, "broker {} listening on {}", b.id, b.addr)?;
            }
            for b in cluster.brokers() {
                if let Some(addr) = crate::metrics::endpoint_addr(b.id) {
                    writeln!(out, "broker {} metrics on http://{addr}/metrics", b.id)?;
                }
            }
            if let Some((server, _)) = &ui {
                writeln!(out, "console on {}", server.url())?;
            }
            writeln!(out, "ready")?;
            out.flush()?;
        }
        let (server, link) = ui.unzip();
        crate::cluster::console::serve(&mut cluster, true, link, wait_for_termination()).await;
        drop(server);
        let status = cluster.status();
        tracing::info!("shutting down");
        cluster.shutdown().await?;
        if let Some(recording) = recording {
            let path = recording.path().display().to_string();
            let summary = recording.finish()?;
            tracing::info!(%path, written = summary.written, dropped = summary.dropped, "message trace written");
        }
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "stopped: {} brokers, {} partitions, {} records below the high-water marks",
            status.brokers.len(),
            status.partitions.len(),
            status
                .partitions
                .iter()
                .map(|p| (p.high_watermark - p.log_start_offset).max(0))
                .sum::<i64>()
        )?;
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn wait_for_termination() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the cluster");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `weir broker`: one broker of a multi-process cluster. Prints `broker <id> listening on
/// <client address>` (and `inter-broker listener <address>` when that is a separate
/// listener), then `ready`; SIGTERM or Ctrl-C is a controlled shutdown.
fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let (config, warnings) = crate::config::BrokerConfig::load(args.config.as_deref(), &args.sets)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    anyhow::ensure!(
        config.zookeeper_connect.as_deref().is_some_and(|c| !c.trim().is_empty()),
        "zookeeper.connect is required: host:port[,host:port][/chroot] for ZooKeeper, weir://host:port for a weir coordinator"
    );
    let bind = |l: &crate::config::Listener| {
        std::net::TcpListener::bind(l.bind_addr())
            .map_err(|e| anyhow::anyhow!("binding listener {} on {}: {e}", l.name, l.bind_addr()))
    };
    let client = config
        .client_listener()
        .ok_or_else(|| anyhow::anyhow!("listeners is empty"))?;
    let inter = config.inter_broker_listener();
    for extra in config
        .parsed_listeners()
        .iter()
        .filter(|l| l.name != client.name && l.name != inter)
    {
        tracing::warn!(listener = %extra.name, "weir serves clients on one listener ({}); {} is not served", client.name, extra.name);
    }
    let sockets = crate::broker_node::NodeSockets {
        client: bind(&client)?,
        inter_broker: match config.parsed_listeners().iter().find(|l| l.name == inter) {
            Some(l) if l.name != client.name => Some(bind(l)?),
            _ => None,
        },
    };
    let inter_addr = match &sockets.inter_broker {
        Some(s) => Some(s.local_addr()?),
        None => None,
    };
    let policy = crate::broker_node::ControlledShutdownPolicy::from_config(&config);
    let recording = args.trace.start()?;
    actix_rt::System::new().block_on(async move {
        let workers: Vec<actix::Arbiter> = (0..std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2))
            .map(|_| actix::Arbiter::new())
            .collect();
        let env = crate::broker_node::NodeEnv {
            embedded: None,
            seam: crate::broker_node::Seam::Tcp,
            workers: workers.iter().map(actix::Arbiter::handle).collect(),
        };
        let ui_listener = config.ui_listener.clone().filter(|l| !l.trim().is_empty());
        let node = crate::broker_node::BrokerNode::start_on(config, sockets, &env).await?;
        // The browser console, read-only: this broker's view of the cluster.
        let console = match &ui_listener {
            Some(listen) => {
                let (server, link) =
                    crate::ui::start(listen, false, &format!("broker {}", node.id)).await?;
                let (id, shared, groups) = (node.id, node.shared.clone(), node.groups.clone());
                let publisher = actix::spawn(async move {
                    let mut refresh = tokio::time::interval(crate::ui::REFRESH);
                    loop {
                        refresh.tick().await;
                        link.publish(
                            &crate::cluster::status::broker_view(id, &shared, &groups).await,
                        );
                    }
                });
                Some((server, publisher))
            }
            None => None,
        };
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "broker {} listening on {}", node.id, node.addr)?;
            if let Some(addr) = inter_addr {
                writeln!(out, "inter-broker listener {addr}")?;
            }
            if let Some(addr) = crate::metrics::endpoint_addr(node.id) {
                writeln!(out, "broker {} metrics on http://{addr}/metrics", node.id)?;
            }
            if let Some((server, _)) = &console {
                writeln!(out, "console on {}", server.url())?;
            }
            writeln!(out, "ready")?;
            out.flush()?;
        }
        wait_for_termination().await;
        if let Some((server, publisher)) = console {
            publisher.abort();
            drop(server);
        }
        let started = std::time::Instant::now();
        tracing::info!(broker = node.id, "shutting down");
        let result = node.shutdown(policy).await;
        for w in &workers {
            w.stop();
        }
        if let Some(recording) = recording {
            let summary = recording.finish()?;
            tracing::info!(
                written = summary.written,
                dropped = summary.dropped,
                "message trace written"
            );
        }
        match result {
            Ok(()) => {
                tracing::info!(
                    broker = node.id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "stopped"
                );
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!("unclean broker shutdown: {e}")),
        }
    })
}

fn run_coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    use crate::actors::coordination::{
        CoordinationConfig, CoordinatorLimits, CoordinatorServer, EmbeddedCoordination,
    };
    use anyhow::Context as _;
    // ZooKeeper's tickTime (session timeouts are clamped to [2, 20] ticks); tests shorten it.
    let tick_ms: u64 = match (args.tick_time_ms, std::env::var("WEIR_COORDINATOR_TICK_MS")) {
        (Some(ms), _) => ms,
        (None, Ok(v)) => v
            .parse()
            .with_context(|| format!("WEIR_COORDINATOR_TICK_MS={v}: not a number of ms"))?,
        (None, Err(_)) => 2000,
    };
    let config = CoordinationConfig::persistent(&args.data_dir)
        .with_tick_time(std::time::Duration::from_millis(tick_ms.max(1)));
    actix_rt::System::new().block_on(async move {
        let service = EmbeddedCoordination::start(config).await?;
        let limits = CoordinatorLimits {
            max_client_cnxns: args.max_client_cnxns,
            max_outstanding: args.max_outstanding,
        };
        let server = CoordinatorServer::bind_with(&args.listen, service.clone(), limits)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = server.local_addr();
        tracing::info!(%addr, data_dir = %args.data_dir.display(), "coordinator serving");
        // stdout is for scripts: the address actually bound (useful with port 0).
        println!("listening {addr}");
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("coordinator stopping");
        server.stop();
        service.shutdown().await;
        Ok(())
    })
}
