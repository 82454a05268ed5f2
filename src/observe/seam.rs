//! The inter-broker seam, observed: [`TracingTransport`] wraps any [`PeerTransport`] (the
//! in-process one, TCP) and records every [`PeerRequest`] and its answer, so the code that
//! sends and the transport that carries stay unaware of tracing.
//!
//! A request that is never answered (its sender gave up: a paused peer, a timeout) is closed
//! by an `ABANDONED` response when its future is dropped, so the diagram shows where an
//! exchange stopped.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::protocol::error::ApiError;
use crate::trace::event::{actor, kafka_error_name, plural, Category, Event};
use crate::trace::{self};
use crate::transport::peer::{
    PartitionResults, PeerRequest, PeerResponse, PeerTransport, TransportError,
};

/// Records what passes through `inner`.
pub struct TracingTransport {
    inner: Arc<dyn PeerTransport>,
}

/// `inner`, recording its traffic whenever a trace runs.
pub fn traced(inner: Arc<dyn PeerTransport>) -> Arc<dyn PeerTransport> {
    Arc::new(TracingTransport { inner })
}

impl PeerTransport for TracingTransport {
    fn send(
        &self,
        from: i32,
        to: i32,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
        if !trace::enabled() {
            return self.inner.send(from, to, request);
        }
        let id = trace::next_id();
        let kind = request.kind();
        trace::emit(describe_request(from, to, id, &request));
        let sent = self.inner.send(from, to, request);
        let mut pending = Unanswered {
            id,
            from,
            to,
            kind,
            answered: false,
        };
        Box::pin(async move {
            let result = sent.await;
            pending.disarm();
            if trace::enabled() {
                trace::emit(describe_response(from, to, id, kind, &result));
            }
            result
        })
    }
}

/// Emits an `ABANDONED` response if the exchange is dropped before its answer.
struct Unanswered {
    id: u64,
    from: i32,
    to: i32,
    kind: &'static str,
    answered: bool,
}

impl Unanswered {
    fn disarm(&mut self) {
        self.answered = true;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.answered && trace::enabled() {
            let mut e = Event::new(
                Category::Seam,
                actor::broker(self.to),
                actor::broker(self.from),
                self.kind,
            );
            e.reply_to = Some(self.id);
            e.error = Some("ABANDONED".into());
            e.detail = Some("the sender stopped waiting (timeout)".into());
            trace::emit(e);
        }
    }
}

/// The `error` of a response that never came from the peer: the transport's verdict. The
/// renderer draws these as notes over the sender.
pub const TRANSPORT_ERRORS: &[&str] = &[
    "UNREACHABLE",
    "LINK_FAILED",
    "TIMEOUT",
    "CLOSED",
    "MISMATCH",
    "IO",
    "ABANDONED",
];

fn api_error_name(e: &ApiError) -> String {
    kafka_error_name(e.code)
}

/// The event of one request.
pub fn describe_request(from: i32, to: i32, id: u64, request: &PeerRequest) -> Event {
    let mut e = Event::new(
        Category::Seam,
        actor::broker(from),
        actor::broker(to),
        request.kind(),
    );
    e.id = Some(id);
    match request {
        PeerRequest::LeaderAndIsr(m) => {
            e.controller_epoch = Some(m.controller_epoch);
            e = e.with_partitions(
                m.partition_states
                    .iter()
                    .map(|s| (s.topic.as_str(), s.partition)),
            );
            if let [s] = m.partition_states.as_slice() {
                e.leader = Some(s.leader);
                e.leader_epoch = Some(s.leader_epoch);
                e.isr = Some(s.isr.clone());
                if s.is_new {
                    e.detail = Some("new".into());
                }
            }
        }
        PeerRequest::UpdateMetadata(m) => {
            e.controller_epoch = Some(m.controller_epoch);
            let tps: Vec<(&str, i32)> = m
                .topic_states
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.name.as_str(), p.partition)))
                .collect();
            e = e.with_partitions(tps);
            if let [t] = m.topic_states.as_slice() {
                if let [p] = t.partitions.as_slice() {
                    e.leader = Some(p.leader);
                    e.leader_epoch = Some(p.leader_epoch);
                    e.isr = Some(p.isr.clone());
                }
            }
            let live: Vec<String> = m.live_brokers.iter().map(|b| b.id.to_string()).collect();
            e.detail = Some(format!("{:?}, live brokers [{}]", m.kind, live.join(",")));
        }
        PeerRequest::StopReplica(m) => {
            e.controller_epoch = Some(m.controller_epoch);
            e = e.with_partitions(
                m.partitions
                    .iter()
                    .map(|tp| (tp.topic.as_str(), tp.partition)),
            );
            if m.delete {
                e.detail = Some("delete".into());
            }
        }
        PeerRequest::BrokerConfigChanged(m) => {
            let configs: Vec<String> = m.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            e.detail = Some(format!("{}: {}", m.entity, configs.join(", ")));
        }
        PeerRequest::TopicConfigChanged(m) => {
            e.topic = Some(m.topic.clone());
            let overrides: Vec<String> = m
                .overrides
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            e.detail = Some(overrides.join(", "));
        }
        PeerRequest::AlterPartition(m) => {
            e = e.with_partitions(m.partitions.iter().map(|p| (p.topic.as_str(), p.partition)));
            if let [p] = m.partitions.as_slice() {
                e.leader_epoch = Some(p.leader_epoch);
                e.isr = Some(p.new_isr.clone());
            }
        }
        PeerRequest::ControlledShutdown(m) => {
            e.detail = Some(format!("broker {} epoch {}", m.broker_id, m.broker_epoch));
        }
        PeerRequest::CreateTopics(m) => {
            if let [t] = m.topics.as_slice() {
                e.topic = Some(t.name.clone());
                e.detail = Some(format!(
                    "{} partitions, RF {}",
                    t.num_partitions, t.replication_factor
                ));
            } else {
                let names: Vec<&str> = m.topics.iter().map(|t| t.name.as_str()).collect();
                e.detail = Some(names.join(", "));
            }
        }
        PeerRequest::DeleteTopics(m) => {
            let names: Vec<String> = m
                .topics
                .iter()
                .map(|t| match t {
                    crate::actors::controller::messages::TopicRef::Name(n) => n.clone(),
                    crate::actors::controller::messages::TopicRef::Id(id) => id.to_string(),
                })
                .collect();
            if let [one] = names.as_slice() {
                e.topic = Some(one.clone());
            } else {
                e.detail = Some(names.join(", "));
            }
        }
        PeerRequest::CreatePartitions(m) => {
            let parts: Vec<String> = m
                .topics
                .iter()
                .map(|t| format!("{} to {} partitions", t.name, t.count))
                .collect();
            e.detail = Some(parts.join(", "));
        }
        PeerRequest::AlterConfigs(m) => {
            let names: Vec<String> = m.changes.iter().map(|(e, _)| e.entity_path()).collect();
            e.detail = Some(names.join(", "));
        }
        PeerRequest::ElectLeaders(m) => {
            e.detail = Some(format!("{:?}", m.election));
            if let Some(tps) = &m.partitions {
                e = e.with_partitions(tps.iter().map(|tp| (tp.topic.as_str(), tp.partition)));
            }
        }
        PeerRequest::ReplicaFetch(m) => {
            e = e.with_partitions(
                m.partitions
                    .iter()
                    .map(|p| (p.tp.topic.as_str(), p.tp.partition)),
            );
            if let [p] = m.partitions.as_slice() {
                e.offset = Some(p.fetch_offset);
                e.leader_epoch = Some(p.current_leader_epoch);
            }
        }
    }
    e
}

fn partition_results_error(r: &PartitionResults) -> Option<String> {
    match r {
        Err(e) => Some(api_error_name(e)),
        Ok(parts) => parts
            .iter()
            .find_map(|(_, err)| err.as_ref().map(api_error_name)),
    }
}

fn unit_error(r: &Result<(), ApiError>) -> Option<String> {
    r.as_ref().err().map(api_error_name)
}

/// The event of one answer (or of the transport's failure to get one).
pub fn describe_response(
    from: i32,
    to: i32,
    id: u64,
    kind: &'static str,
    result: &Result<PeerResponse, TransportError>,
) -> Event {
    let mut e = Event::new(Category::Seam, actor::broker(to), actor::broker(from), kind);
    e.reply_to = Some(id);
    let response = match result {
        Ok(r) => r,
        Err(err) => {
            e.error = Some(
                match err {
                    TransportError::UnknownBroker(_) => "UNREACHABLE",
                    TransportError::Link { .. } => "LINK_FAILED",
                    TransportError::Timeout { .. } => "TIMEOUT",
                    TransportError::Closed(_) => "CLOSED",
                    TransportError::Mismatch { .. } => "MISMATCH",
                    TransportError::Io { .. } => "IO",
                    TransportError::Refused { .. } => "REFUSED",
                }
                .into(),
            );
            e.detail = Some(match err {
                TransportError::Link { failure, .. } => failure.to_string(),
                other => other.to_string(),
            });
            return e;
        }
    };
    match response {
        PeerResponse::LeaderAndIsr(r) | PeerResponse::StopReplica(r) => {
            e.error = partition_results_error(r);
        }
        PeerResponse::UpdateMetadata(r)
        | PeerResponse::TopicConfigChanged(r)
        | PeerResponse::BrokerConfigChanged(r) => {
            e.error = unit_error(r);
        }
        PeerResponse::AlterPartition(r) => match r {
            Err(err) => e.error = Some(api_error_name(err)),
            Ok(parts) => {
                e = e.with_partitions(
                    parts
                        .iter()
                        .map(|(tp, _)| (tp.topic.as_str(), tp.partition)),
                );
                if let [(_, one)] = parts.as_slice() {
                    match one {
                        Ok(l) => {
                            e.leader = Some(l.leader);
                            e.leader_epoch = Some(l.leader_epoch);
                            e.isr = Some(l.isr.clone());
                        }
                        Err(err) => e.error = Some(api_error_name(err)),
                    }
                } else {
                    e.error = parts
                        .iter()
                        .find_map(|(_, r)| r.as_ref().err().map(api_error_name));
                }
            }
        },
        PeerResponse::ControlledShutdown(r) => match r {
            Err(err) => e.error = Some(api_error_name(err)),
            Ok(remaining) => e.detail = Some(format!("{} partitions still led", remaining.len())),
        },
        PeerResponse::CreateTopics(outcomes) => {
            e.error = outcomes
                .iter()
                .find_map(|o| o.result.as_ref().err().map(api_error_name));
        }
        PeerResponse::DeleteTopics(outcomes) => {
            e.error = outcomes
                .iter()
                .find_map(|o| o.error.as_ref().map(api_error_name));
        }
        PeerResponse::CreatePartitions(r) => {
            e.error = r
                .iter()
                .find_map(|(_, r)| r.as_ref().err().map(api_error_name));
        }
        PeerResponse::AlterConfigs(r) => {
            e.error = r
                .iter()
                .find_map(|(_, r)| r.as_ref().err().map(api_error_name));
        }
        PeerResponse::ElectLeaders(r) => match r {
            Err(err) => e.error = Some(api_error_name(err)),
            Ok(parts) => {
                e.error = parts
                    .iter()
                    .find_map(|(_, r)| r.as_ref().err().map(api_error_name))
            }
        },
        PeerResponse::ReplicaFetch(r) => {
            e = e.with_partitions(
                r.partitions
                    .iter()
                    .map(|p| (p.tp.topic.as_str(), p.tp.partition)),
            );
            if let [p] = r.partitions.as_slice() {
                if p.error.is_none() {
                    e.hwm = Some(p.high_watermark);
                    e.leo = Some(p.log_end_offset);
                }
                if let Some(d) = p.diverging_epoch {
                    e.detail = Some(format!(
                        "diverging: epoch {} ends at {}",
                        d.epoch, d.end_offset
                    ));
                } else if !p.records.is_empty() {
                    e.detail = Some(plural(p.records.len() as i64, "byte"));
                }
            } else {
                let bytes: usize = r.partitions.iter().map(|p| p.records.len()).sum();
                if bytes > 0 {
                    e.detail = Some(plural(bytes as i64, "byte"));
                }
            }
            e.error = r
                .partitions
                .iter()
                .find_map(|p| p.error.as_ref().map(api_error_name));
        }
    }
    e
}
