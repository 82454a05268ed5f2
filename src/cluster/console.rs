//! The fault console of `weir cluster`: one command a line on stdin, one answer a line on
//! stdout (`ok <command>`, `error <why>`, or for `status` the cluster's state as one JSON
//! line). The commands are [`super::faults::Fault`]'s, plus `status`. End of input changes
//! nothing: a cluster started in the background keeps running.

use std::io::Write;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::faults::Fault;
use super::Cluster;

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

/// Serves stdin until `stop` completes; returns the cluster for shutdown.
pub async fn serve_stdin(cluster: &mut Cluster, stop: impl std::future::Future<Output = ()>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut reading = true;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            line = lines.next_line(), if reading => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    let reply = answer(cluster, &line).await;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{reply}");
                    let _ = out.flush();
                }
                // End of input (or no stdin): keep running until told to stop.
                Ok(None) | Err(_) => reading = false,
            },
        }
    }
}
