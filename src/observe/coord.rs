//! Coordination traffic, observed: every request a [`CoordinationClient`] sends (with
//! ZooKeeper's operation names: `create`, `setData`, `multi`, …) and its answer, and every
//! watch event and session-state change a broker receives.
//!
//! Requests are named by session: a session is its broker's (`b<N>`) once the broker's
//! controller actor has seen an event of it (its first `SyncConnected` arrives at start) or
//! it created `/brokers/ids/<N>`; requests before that carry `session:<id>`, and the renderer
//! renames them from the registration.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::actors::coordination::{
    CoordinationClient, CoordinationError, CreateMode, Op, Request, Response, SessionEvent,
};
use crate::trace::event::{actor, Category, Event};
use crate::trace::{self};

/// Broker of each session seen registering. A std Mutex: held for a map access only.
static OWNERS: Mutex<Option<HashMap<i64, i32>>> = Mutex::new(None);

fn owner_of(session: i64) -> Option<i32> {
    OWNERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(&session).copied())
}

fn set_owner(session: i64, broker: i32) {
    let previous = OWNERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(session, broker);
    // Tell the renderer, which names the session's earlier requests after the broker.
    if previous != Some(broker) && trace::enabled() {
        trace::emit(Event::new(
            Category::Meta,
            actor::session(session),
            actor::broker(broker),
            "SessionBound",
        ));
    }
}

fn session_actor(session: i64) -> String {
    match owner_of(session) {
        Some(b) => actor::broker(b),
        None => actor::session(session),
    }
}

/// What [`request`] hands to [`response`].
pub struct Traced {
    id: u64,
    actor: String,
    kind: &'static str,
}

/// Records a request about to be sent; `None` when no trace runs.
#[inline]
pub fn request(client: &CoordinationClient, request: &Request) -> Option<Traced> {
    if !trace::enabled() {
        return None;
    }
    Some(record_request(client.session_id(), request))
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Create { .. } => "create",
        Request::Delete { .. } => "delete",
        Request::SetData { .. } => "setData",
        Request::GetData { .. } => "getData",
        Request::Exists { .. } => "exists",
        Request::GetChildren { .. } => "getChildren",
        Request::Multi(_) => "multi",
    }
}

/// Kafka's partition state znode: `/brokers/topics/<t>/partitions/<p>/state`.
fn state_znode(path: &str) -> Option<(&str, i32)> {
    let rest = path.strip_prefix("/brokers/topics/")?;
    let (topic, rest) = rest.split_once("/partitions/")?;
    let partition = rest.strip_suffix("/state")?.parse().ok()?;
    Some((topic, partition))
}

/// The leader, epochs and ISR a state znode's data carries.
fn read_state(e: &mut Event, path: &str, data: &[u8]) {
    let Some((topic, partition)) = state_znode(path) else {
        return;
    };
    e.topic = Some(topic.to_string());
    e.partition = Some(partition);
    if let Ok(state) = crate::znodes::from_bytes::<crate::znodes::PartitionStateZNode>(path, data) {
        e.leader = Some(state.leader);
        e.leader_epoch = Some(state.leader_epoch);
        e.isr = Some(state.isr);
        e.controller_epoch = Some(state.controller_epoch);
    }
}

fn record_request(session: i64, request: &Request) -> Traced {
    if let Request::Create {
        path,
        mode: CreateMode::Ephemeral,
        ..
    } = request
    {
        if let Some(id) = path
            .strip_prefix("/brokers/ids/")
            .and_then(|id| id.parse::<i32>().ok())
        {
            set_owner(session, id);
        }
    }
    let id = trace::next_id();
    let from = session_actor(session);
    let kind = request_name(request);
    let mut e = Event::new(Category::Coord, from.clone(), actor::COORD, kind);
    e.id = Some(id);
    match request {
        Request::Create { path, data, mode } => {
            e.path = Some(path.clone());
            read_state(&mut e, path, data);
            if *mode != CreateMode::Persistent {
                e.detail = Some(format!("{mode:?}").to_lowercase());
            }
        }
        Request::SetData {
            path,
            data,
            version,
        } => {
            e.path = Some(path.clone());
            read_state(&mut e, path, data);
            if let Some(v) = version {
                e.detail = Some(format!("if version {v}"));
            }
        }
        Request::Delete { path, .. } => e.path = Some(path.clone()),
        Request::GetData { path, watch }
        | Request::Exists { path, watch }
        | Request::GetChildren { path, watch } => {
            e.path = Some(path.clone());
            if *watch {
                e.detail = Some("watch".into());
            }
        }
        Request::Multi(ops) => {
            // The path a reader looks for is the first write; the checks are fencing.
            let main = ops
                .iter()
                .find(|o| !matches!(o, Op::Check { .. }))
                .or(ops.first());
            if let Some(op) = main {
                e.path = Some(op.path().to_string());
            }
            let states: Vec<(&str, &[u8])> = ops
                .iter()
                .filter_map(|o| match o {
                    Op::Create { path, data, .. } | Op::SetData { path, data, .. }
                        if state_znode(path).is_some() =>
                    {
                        Some((path.as_str(), data.as_slice()))
                    }
                    _ => None,
                })
                .collect();
            match states.as_slice() {
                [(path, data)] => read_state(&mut e, path, data),
                many => {
                    e.set_partitions(many.iter().filter_map(|(p, _)| state_znode(p)));
                }
            }
            let mut detail = vec![format!("{} ops", ops.len())];
            if ops.iter().any(|o| matches!(o, Op::Check { .. })) {
                detail.push(format!(
                    "fenced by {}",
                    ops.iter()
                        .find(|o| matches!(o, Op::Check { .. }))
                        .map(|o| o.path())
                        .unwrap_or_default()
                ));
            }
            if !states.is_empty() {
                detail.push(format!(
                    "writes {}",
                    crate::trace::event::plural(states.len() as i64, "partition state znode")
                ));
            }
            e.detail = Some(detail.join(", "));
        }
    }
    trace::emit(e);
    Traced {
        id,
        actor: from,
        kind,
    }
}

/// ZooKeeper's name of an error (`NodeExists`, `BadVersion`, …).
fn error_name(e: &CoordinationError) -> String {
    let text = e.to_string();
    text.split(':').next().unwrap_or(&text).to_string()
}

/// Records the answer to a request [`request`] recorded.
#[inline]
pub fn response(traced: Option<Traced>, result: &Result<Response, CoordinationError>) {
    if let Some(traced) = traced {
        if trace::enabled() {
            record_response(traced, result);
        }
    }
}

fn record_response(traced: Traced, result: &Result<Response, CoordinationError>) {
    let mut e = Event::new(Category::Coord, actor::COORD, traced.actor, traced.kind);
    e.reply_to = Some(traced.id);
    match result {
        Err(err) => e.error = Some(error_name(err)),
        Ok(Response::Created(path)) => e.path = Some(path.clone()),
        Ok(Response::Children(children)) => e.detail = Some(format!("{} children", children.len())),
        Ok(Response::Exists(None)) => e.detail = Some("absent".into()),
        Ok(Response::SetData(stat)) => e.detail = Some(format!("version {}", stat.version)),
        Ok(_) => {}
    }
    trace::emit(e);
}

/// Records a watch event or session-state change delivered to broker `broker` on `session`.
/// Always notes whose session it is (a map insert per session event, which are rare), so a
/// trace started later still names the broker behind each session.
#[inline]
pub fn session_event(broker: i32, session: i64, event: &SessionEvent) {
    if matches!(event, SessionEvent::State(_)) {
        set_owner(session, broker);
    }
    if trace::enabled() {
        let e = match event {
            SessionEvent::Watch(w) => {
                let mut e = Event::new(
                    Category::Watch,
                    actor::COORD,
                    actor::broker(broker),
                    format!("{:?}", w.event_type),
                );
                e.path = Some(w.path.clone());
                e
            }
            SessionEvent::State(state) => Event::new(
                Category::Watch,
                actor::COORD,
                actor::broker(broker),
                format!("Session{state:?}"),
            ),
        };
        trace::emit(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_znode_writes_carry_the_partition_state() {
        let data = br#"{"controller_epoch":2,"leader":3,"version":1,"leader_epoch":5,"isr":[3,1]}"#;
        let mut e = Event::new(Category::Coord, "b1", "coord", "setData");
        read_state(&mut e, "/brokers/topics/orders/partitions/7/state", data);
        assert_eq!(e.topic.as_deref(), Some("orders"));
        assert_eq!(e.partition, Some(7));
        assert_eq!(e.leader, Some(3));
        assert_eq!(e.leader_epoch, Some(5));
        assert_eq!(e.isr, Some(vec![3, 1]));
        assert_eq!(e.controller_epoch, Some(2));
        let mut other = Event::new(Category::Coord, "b1", "coord", "create");
        read_state(&mut other, "/brokers/topics/orders", b"{}");
        assert_eq!(other.topic, None);
    }

    #[test]
    fn coordination_errors_read_as_zookeepers_names() {
        assert_eq!(
            error_name(&CoordinationError::NodeExists {
                path: "/controller".into()
            }),
            "NodeExists"
        );
        assert_eq!(
            error_name(&CoordinationError::SessionExpired),
            "SessionExpired"
        );
    }
}
