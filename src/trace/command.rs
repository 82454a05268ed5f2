//! The trace's command line: `weir cluster --trace FILE [--trace-filter EXPR] [--trace-rate N]`
//! and `weir trace render FILE --format mermaid|text [--from T --to T] [--topic T --partition P]
//! [--actors A,B,...]`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::render::{self, Format, View};
use super::{Filter, Recording, TraceConfig};

/// Recording flags, for any command that runs brokers.
#[derive(Debug, Args, Clone, Default)]
pub struct TraceFlags {
    /// Record a message trace to FILE (JSON lines; `weir trace render` draws it).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Keep only matching events: space-separated `key=a|b` / `key!=a` terms on cat, kind,
    /// from, to, actor, topic, partition (e.g. `cat!=client kind!=ReplicaFetch`).
    #[arg(long, value_name = "EXPR", requires = "trace")]
    pub trace_filter: Option<String>,
    /// The rate cap: events recorded per second at most (the rest are counted as dropped).
    #[arg(long, value_name = "N", default_value_t = TraceConfig::DEFAULT_RATE_PER_SEC)]
    pub trace_rate: u32,
}

impl TraceFlags {
    /// Starts the recording the flags ask for, if any.
    pub fn start(&self) -> anyhow::Result<Option<Recording>> {
        let Some(path) = &self.trace else {
            return Ok(None);
        };
        let filter = match &self.trace_filter {
            Some(expr) => {
                Filter::parse(expr).map_err(|e| anyhow::anyhow!("--trace-filter: {e}"))?
            }
            None => Filter::default(),
        };
        super::start(
            TraceConfig::new(path)
                .filter(filter)
                .rate_per_sec(self.trace_rate),
        )
        .map(Some)
    }
}

#[derive(Debug, Subcommand, Clone)]
pub enum TraceCommand {
    /// Draws a trace file as a sequence diagram on stdout.
    Render(RenderArgs),
}

#[derive(Debug, Args, Clone)]
pub struct RenderArgs {
    /// A trace written by `--trace` or `weir demo`.
    pub file: PathBuf,
    /// `mermaid` (a sequenceDiagram) or `text`.
    #[arg(long, default_value = "mermaid")]
    pub format: Format,
    /// Leave out events before this time since the trace's start (1.5s, 250ms, 800us; ms).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// Leave out events after this time.
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    /// Only events about this topic (with their responses, and faults).
    #[arg(long)]
    pub topic: Option<String>,
    /// With --topic: only this partition.
    #[arg(long, requires = "topic")]
    pub partition: Option<i32>,
    /// Only events between these actors (comma-separated: b1,b2,coord,client:*,console).
    #[arg(long, value_delimiter = ',')]
    pub actors: Vec<String>,
    /// Draw every fetch and heartbeat instead of folding repeats into a count.
    #[arg(long)]
    pub no_fold: bool,
}

impl RenderArgs {
    pub fn view(&self) -> anyhow::Result<View> {
        let time = |t: &Option<String>| -> anyhow::Result<Option<u64>> {
            t.as_deref()
                .map(render::parse_time)
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))
        };
        Ok(View {
            from_us: time(&self.from)?,
            to_us: time(&self.to)?,
            topic: self.topic.clone(),
            partition: self.partition,
            actors: self.actors.clone(),
            fold: !self.no_fold,
        })
    }
}

pub fn run(command: TraceCommand) -> anyhow::Result<()> {
    match command {
        TraceCommand::Render(args) => {
            let events = super::read_file(&args.file)?;
            let out = render::render(&events, &args.view()?, args.format);
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}
