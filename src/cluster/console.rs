//! The fault console of `weir cluster`: one command a line on stdin, one answer a line on
//! stdout (`ok <command>`, `error <why>`, or for `status` the cluster's state as one JSON
//! line). The commands are [`super::faults::Fault`]'s, plus `status`. End of input changes
//! nothing: a cluster started in the background keeps running.
//!
//! With the browser console on (`--ui`), the same loop owns its [`UiLink`]: it publishes the
//! cluster's status every [`crate::ui::REFRESH`] and after each fault, and answers the page's
//! fault buttons exactly as it answers stdin.

use std::io::{BufRead, Write};

use tokio::sync::mpsc;

use super::faults::Fault;
use super::Cluster;
use crate::ui::UiLink;

/// Answers one console line.
pub async fn answer(cluster: &mut Cluster, line: &str) -> String {
    let command = line.trim();
    if command == "status" {
        return match serde_json::to_string(&cluster.status()) {
            Ok(json) => json,
            Err(e) => format!("error cannot encode the status: {e}"),
        };
    }
    match command.parse::<Fault>() {
        Ok(fault) => match cluster.inject(fault).await {
            Ok(()) => format!("ok {command}"),
            Err(why) => format!("error {why}"),
        },
        Err(why) => format!("error {why}"),
    }
}

/// Serves stdin (when `stdin`) and the browser console (when `ui`) until `stop` completes.
pub async fn serve(
    cluster: &mut Cluster,
    stdin: bool,
    mut ui: Option<UiLink>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut lines = if stdin {
        stdin_lines()
    } else {
        mpsc::unbounded_channel().1
    };
    let mut reading = stdin;
    let mut refresh = tokio::time::interval(crate::ui::REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            line = lines.recv(), if reading => match line {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    let reply = answer(cluster, &line).await;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{reply}");
                    let _ = out.flush();
                }
                // End of input (or no stdin): keep running until told to stop.
                None => reading = false,
            },
            request = async {
                match ui.as_mut() {
                    Some(link) => link.next_fault().await,
                    None => std::future::pending().await,
                }
            } => {
                // Only faults: the page reads the status from its own stream.
                let reply = match request.command.parse::<Fault>() {
                    Ok(_) => answer(cluster, &request.command).await,
                    Err(why) => format!("error {why}"),
                };
                // The page sees the fault's effect no later than its answer.
                if let Some(link) = &ui {
                    link.publish(&cluster.status_with_groups().await);
                }
                let _ = request.reply.send(reply);
            }
            _ = refresh.tick(), if ui.is_some() => {
                if let Some(link) = &ui {
                    link.publish(&cluster.status_with_groups().await);
                }
            }
        }
    }
}

/// Stdin's lines, read by a thread of their own. Not `tokio::io::stdin`: its read runs on the
/// runtime's blocking pool, which the runtime waits for when it shuts down, so a stop
/// (SIGTERM, Ctrl-C) with stdin open and silent (a terminal, a pipe nobody writes) would
/// hang the process after the cluster stopped. A plain thread ends with the process.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("console-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot read the console from stdin");
    }
    rx
}
