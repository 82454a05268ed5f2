//! One trace event: the JSON object written on each line of a trace file.
//!
//! # Schema (one JSON object a line)
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `seq` | integer | emission order within the trace (renderers sort by it) |
//! | `t_us` | integer | monotonic microseconds since the trace started |
//! | `cat` | string | what was observed: `seam` (inter-broker request or response), `coord` (a coordination request or response), `watch` (a fired watch or session-state change), `controller` (a controller decision), `client` (a Kafka client request or response), `replica` (a replica's role, ISR, high-water mark or leader epoch changed), `fault` (an injected fault), `meta` (the trace's own bookkeeping) |
//! | `from`, `to` | string | actors: `b<N>` a broker, `coord` the coordination service, `client:<client.id>` a Kafka client, `console` the fault console, `session:<hex id>` a coordination session not yet tied to a broker. A decision or state change has `from == to`: the actor it happened in |
//! | `kind` | string | the message kind: a peer request kind (`LeaderAndIsr`, `UpdateMetadata`, …), a Kafka API (`Produce`, `Metadata`, …), a ZooKeeper operation (`create`, `setData`, `multi`, …), a watch event type (`NodeDeleted`, …), a decision (`ControllerElected`, `PartitionState`, …), `ReplicaState`, or the fault command (`crash`, `cut`, …) |
//! | `id` | integer? | set on a request: its causal id |
//! | `reply_to` | integer? | set on a response: the `id` of the request it answers |
//! | `topic`, `partition` | string?, integer? | the one partition the event is about |
//! | `partitions` | [string]? | `topic-partition` names when the event concerns several |
//! | `leader`, `leader_epoch`, `controller_epoch`, `isr` | integer?, integer?, integer?, [integer]? | partition state carried or decided |
//! | `offset`, `hwm`, `leo` | integer? | a record offset (a produce's base offset, a fetch position), the high-water mark, the log end offset |
//! | `path` | string? | a znode path (coordination requests and watches) |
//! | `error` | string? | a response's error, by Kafka's or ZooKeeper's name |
//! | `detail` | string? | the rest, human-readable |
//! | `count` | integer? | `meta` events: how many events were dropped (`TraceDropped`) or written (`TraceEnded`) |
//!
//! Optional fields are left out when unset. Readers ignore fields they do not know, so the
//! schema grows by adding fields.

use serde::{Deserialize, Serialize};

/// What part of the system an event was observed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Seam,
    Coord,
    Watch,
    Controller,
    Client,
    Replica,
    Fault,
    Meta,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Seam,
        Category::Coord,
        Category::Watch,
        Category::Controller,
        Category::Client,
        Category::Replica,
        Category::Fault,
        Category::Meta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Seam => "seam",
            Category::Coord => "coord",
            Category::Watch => "watch",
            Category::Controller => "controller",
            Category::Client => "client",
            Category::Replica => "replica",
            Category::Fault => "fault",
            Category::Meta => "meta",
        }
    }
}

/// One observed message, decision or state change. Built only while a trace is recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub t_us: u64,
    pub cat: Category,
    pub from: String,
    pub to: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_epoch: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hwm: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leo: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Event {
    /// An event of `kind` from `from` to `to`; everything else unset.
    pub fn new(
        cat: Category,
        from: impl Into<String>,
        to: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Event {
            seq: 0,
            t_us: 0,
            cat,
            from: from.into(),
            to: to.into(),
            kind: kind.into(),
            id: None,
            reply_to: None,
            topic: None,
            partition: None,
            partitions: Vec::new(),
            leader: None,
            leader_epoch: None,
            controller_epoch: None,
            isr: None,
            offset: None,
            hwm: None,
            leo: None,
            path: None,
            error: None,
            detail: None,
            count: None,
        }
    }

    /// A decision or state change inside one actor.
    pub fn note(cat: Category, actor: impl Into<String>, kind: impl Into<String>) -> Self {
        let actor = actor.into();
        Event::new(cat, actor.clone(), actor, kind)
    }

    pub fn is_note(&self) -> bool {
        self.from == self.to
    }

    pub fn is_response(&self) -> bool {
        self.reply_to.is_some()
    }

    /// Sets the partitions the event concerns: one goes to `topic`/`partition`, several to
    /// `partitions` (and `topic` too when they share one).
    pub fn with_partitions<'a>(mut self, tps: impl IntoIterator<Item = (&'a str, i32)>) -> Self {
        self.set_partitions(tps);
        self
    }

    /// [`Event::with_partitions`] in place.
    pub fn set_partitions<'a>(&mut self, tps: impl IntoIterator<Item = (&'a str, i32)>) {
        let tps: Vec<(&str, i32)> = tps.into_iter().collect();
        match tps.as_slice() {
            [] => {}
            [(t, p)] => {
                self.topic = Some((*t).to_string());
                self.partition = Some(*p);
            }
            many => {
                if many.iter().all(|(t, _)| *t == many[0].0) {
                    self.topic = Some(many[0].0.to_string());
                }
                self.partitions = many.iter().map(|(t, p)| format!("{t}-{p}")).collect();
            }
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        if !detail.is_empty() {
            self.detail = Some(detail);
        }
        self
    }

    pub fn with_error(mut self, error: Option<String>) -> Self {
        self.error = error;
        self
    }

    /// Whether the event concerns `topic` (and `partition`, when given).
    pub fn mentions(&self, topic: &str, partition: Option<i32>) -> bool {
        let single = self.topic.as_deref() == Some(topic)
            && match (partition, self.partition) {
                (None, _) => true,
                (Some(p), Some(q)) => p == q,
                // A multi-partition event: decided by the list below.
                (Some(_), None) => false,
            };
        single
            || self.partitions.iter().any(|tp| match partition {
                Some(p) => *tp == format!("{topic}-{p}"),
                None => tp
                    .rsplit_once('-')
                    .is_some_and(|(t, p)| t == topic && p.parse::<i32>().is_ok()),
            })
    }
}

/// Actor names, so every hook spells them the same way.
pub mod actor {
    /// Broker `id`.
    pub fn broker(id: i32) -> String {
        format!("b{id}")
    }

    /// The coordination service.
    pub const COORD: &str = "coord";

    /// The fault console (and any caller of `Cluster::inject`).
    pub const CONSOLE: &str = "console";

    /// A Kafka client, by its `client.id`.
    pub fn client(client_id: Option<&str>) -> String {
        match client_id.map(str::trim).filter(|c| !c.is_empty()) {
            Some(id) => format!("client:{id}"),
            None => "client".to_string(),
        }
    }

    /// A coordination session not (yet) known to belong to a broker.
    pub fn session(id: i64) -> String {
        format!("session:{id:x}")
    }

    /// The broker id of `b<N>`.
    pub fn broker_id(actor: &str) -> Option<i32> {
        actor.strip_prefix('b')?.parse().ok()
    }
}

/// `1 record`, `3 records`.
pub fn plural(n: impl Into<i64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Kafka's name for an error code (`NOT_LEADER_OR_FOLLOWER`), or the number when unknown.
pub fn kafka_error_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code).map(|e| format!("{e:?}")) {
        // Codes the crate does not know come back as `Unknown(code)`.
        Some(name) if !name.contains('(') => screaming_snake(&name),
        _ => format!("ERROR_{code}"),
    }
}

/// `NotLeaderOrFollower` → `NOT_LEADER_OR_FOLLOWER`.
pub fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_are_left_out_of_the_json_line() {
        let e =
            Event::new(Category::Seam, "b1", "b2", "LeaderAndIsr").with_partitions([("orders", 0)]);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"seq":0,"t_us":0,"cat":"seam","from":"b1","to":"b2","kind":"LeaderAndIsr","topic":"orders","partition":0}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn several_partitions_of_one_topic_keep_the_topic() {
        let e = Event::note(Category::Controller, "b1", "x")
            .with_partitions([("orders", 0), ("orders", 1)]);
        assert_eq!(e.topic.as_deref(), Some("orders"));
        assert_eq!(e.partitions, vec!["orders-0", "orders-1"]);
        assert!(e.mentions("orders", Some(1)));
        assert!(!e.mentions("orders", Some(2)));
        assert!(e.mentions("orders", None));
        assert!(!e.mentions("order", None));
    }

    #[test]
    fn error_codes_read_as_kafkas_names() {
        assert_eq!(kafka_error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(kafka_error_name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(kafka_error_name(-12345), "ERROR_-12345");
    }
}
