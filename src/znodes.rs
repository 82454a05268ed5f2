//! Kafka's ZooKeeper-era layout: the paths and the JSON each znode holds, byte-compatible with
//! what a ZooKeeper-mode Kafka writes, so ZooKeeper's own CLI shows weir's cluster as Kafka's
//! (`kafka.zk.ZkData`). The coordination service stores bytes; this module gives them meaning.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Znode paths, one function per kind of node.
pub mod paths {
    pub const BROKER_IDS: &str = "/brokers/ids";
    pub const BROKER_TOPICS: &str = "/brokers/topics";
    pub const BROKER_SEQID: &str = "/brokers/seqid";
    pub const CONTROLLER: &str = "/controller";
    pub const CONTROLLER_EPOCH: &str = "/controller_epoch";
    pub const CLUSTER_ID: &str = "/cluster/id";
    pub const CONFIG_TOPICS: &str = "/config/topics";
    pub const CONFIG_CHANGES: &str = "/config/changes";
    pub const DELETE_TOPICS: &str = "/admin/delete_topics";
    pub const PREFERRED_REPLICA_ELECTION: &str = "/admin/preferred_replica_election";
    pub const LATEST_PRODUCER_ID_BLOCK: &str = "/latest_producer_id_block";
    /// Prefix of sequential config change notifications.
    pub const CONFIG_CHANGE_PREFIX: &str = "/config/changes/config_change_";
    pub const LOG_DIR_EVENT_NOTIFICATION: &str = "/log_dir_event_notification";
    /// Prefix of a broker's sequential log dir failure notifications.
    pub const LOG_DIR_EVENT_PREFIX: &str = "/log_dir_event_notification/log_dir_event_";

    /// The persistent paths Kafka creates at start-up.
    pub const PERSISTENT: &[&str] = &[
        "/brokers/ids",
        "/brokers/topics",
        "/brokers/seqid",
        "/config/changes",
        "/config/topics",
        "/config/brokers",
        "/admin/delete_topics",
        "/isr_change_notification",
        "/latest_producer_id_block",
        "/log_dir_event_notification",
        "/cluster",
    ];

    pub fn broker(id: i32) -> String {
        format!("{BROKER_IDS}/{id}")
    }
    pub fn topic(topic: &str) -> String {
        format!("{BROKER_TOPICS}/{topic}")
    }
    pub fn topic_partitions(topic: &str) -> String {
        format!("{BROKER_TOPICS}/{topic}/partitions")
    }
    pub fn partition(topic: &str, partition: i32) -> String {
        format!("{BROKER_TOPICS}/{topic}/partitions/{partition}")
    }
    pub fn partition_state(topic: &str, partition: i32) -> String {
        format!("{BROKER_TOPICS}/{topic}/partitions/{partition}/state")
    }
    pub fn topic_config(topic: &str) -> String {
        format!("{CONFIG_TOPICS}/{topic}")
    }
    /// `/config/<entity path>`: a topic's, one broker's or the cluster default's overrides.
    pub fn entity_config(entity_path: &str) -> String {
        format!("/config/{entity_path}")
    }
    pub fn delete_topic(topic: &str) -> String {
        format!("{DELETE_TOPICS}/{topic}")
    }
}

/// Milliseconds since the epoch, as the string Kafka writes in `timestamp` fields.
pub fn now_timestamp() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

/// `/brokers/ids/<id>` (ephemeral): Kafka's version-5 registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    #[serde(default)]
    pub features: BTreeMap<String, serde_json::Value>,
    pub listener_security_protocol_map: BTreeMap<String, String>,
    /// `NAME://host:port`, the advertised listeners.
    pub endpoints: Vec<String>,
    pub jmx_port: i32,
    /// The first PLAINTEXT endpoint's host and port (Kafka keeps them for old clients).
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub timestamp: String,
    pub version: i32,
}

impl BrokerRegistration {
    pub fn new(
        endpoints: Vec<(String, String, u16)>,
        protocol_map: BTreeMap<String, String>,
        rack: Option<String>,
    ) -> Self {
        let (host, port) = endpoints
            .iter()
            .find(|(name, _, _)| name == "PLAINTEXT")
            .or(endpoints.first())
            .map(|(_, h, p)| (h.clone(), *p as i32))
            .unwrap_or_default();
        Self {
            features: BTreeMap::new(),
            listener_security_protocol_map: protocol_map,
            endpoints: endpoints
                .iter()
                .map(|(name, host, port)| format!("{name}://{host}:{port}"))
                .collect(),
            jmx_port: -1,
            host,
            port,
            rack,
            timestamp: now_timestamp(),
            version: 5,
        }
    }

    /// Endpoints as (listener name, host, port).
    pub fn parsed_endpoints(&self) -> Vec<(String, String, u16)> {
        self.endpoints
            .iter()
            .filter_map(|e| {
                let l = crate::config::Listener::parse(e).ok()?;
                Some((l.name, l.host, l.port))
            })
            .collect()
    }
}

/// `/controller` (ephemeral).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerZNode {
    pub version: i32,
    pub brokerid: i32,
    pub timestamp: String,
}

impl ControllerZNode {
    pub fn new(broker_id: i32) -> Self {
        Self {
            version: 1,
            brokerid: broker_id,
            timestamp: now_timestamp(),
        }
    }
}

/// `/controller_epoch` holds the epoch as a bare decimal string.
pub fn encode_controller_epoch(epoch: i32) -> Vec<u8> {
    epoch.to_string().into_bytes()
}

pub fn decode_controller_epoch(data: &[u8]) -> Option<i32> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

/// `/brokers/topics/<t>`: the assignment (first replica preferred) and the topic id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicZNode {
    pub version: i32,
    pub partitions: BTreeMap<String, Vec<i32>>,
    #[serde(default)]
    pub adding_replicas: BTreeMap<String, Vec<i32>>,
    #[serde(default)]
    pub removing_replicas: BTreeMap<String, Vec<i32>>,
    /// Kafka's `Uuid.toString()`: URL-safe base64 without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
}

impl TopicZNode {
    pub fn new(assignment: &BTreeMap<i32, Vec<i32>>, topic_id: uuid::Uuid) -> Self {
        Self {
            version: 3,
            partitions: assignment
                .iter()
                .map(|(p, r)| (p.to_string(), r.clone()))
                .collect(),
            adding_replicas: BTreeMap::new(),
            removing_replicas: BTreeMap::new(),
            topic_id: Some(encode_topic_id(topic_id)),
        }
    }

    /// The assignment keyed by partition number; unparsable keys are skipped.
    pub fn assignment(&self) -> BTreeMap<i32, Vec<i32>> {
        self.partitions
            .iter()
            .filter_map(|(p, r)| Some((p.parse().ok()?, r.clone())))
            .collect()
    }

    pub fn topic_uuid(&self) -> Option<uuid::Uuid> {
        self.topic_id.as_deref().and_then(decode_topic_id)
    }
}

/// Kafka's textual topic id.
pub fn encode_topic_id(id: uuid::Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode_topic_id(s: &str) -> Option<uuid::Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    uuid::Uuid::from_slice(&bytes).ok()
}

/// `/brokers/topics/<t>/partitions/<p>/state`: leader, epochs and ISR, written by the
/// controller conditionally on the znode version (the partition epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStateZNode {
    pub controller_epoch: i32,
    pub leader: i32,
    pub version: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_recovery_state: Option<i32>,
}

impl PartitionStateZNode {
    pub fn new(controller_epoch: i32, leader: i32, leader_epoch: i32, isr: Vec<i32>) -> Self {
        Self {
            controller_epoch,
            leader,
            version: 1,
            leader_epoch,
            isr,
            leader_recovery_state: None,
        }
    }
}

/// `/config/topics/<t>`: topic-level overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigZNode {
    pub version: i32,
    pub config: BTreeMap<String, String>,
}

impl ConfigZNode {
    pub fn new(config: BTreeMap<String, String>) -> Self {
        Self { version: 1, config }
    }
}

/// `/config/changes/config_change_<seq>`: tells the controller which entity changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChangeNotification {
    pub version: i32,
    pub entity_path: String,
}

impl ConfigChangeNotification {
    pub fn topic(topic: &str) -> Self {
        Self::entity(format!("topics/{topic}"))
    }

    /// `entity_path` as Kafka writes it: `topics/<t>`, `brokers/<id>`, `brokers/<default>`.
    pub fn entity(entity_path: String) -> Self {
        Self {
            version: 2,
            entity_path,
        }
    }
}

/// `/log_dir_event_notification/log_dir_event_<seq>`: a broker tells the controller one of
/// its log dirs failed (`LogDirEventNotificationZNode`; event 1 is LogDirFailure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDirEventNotification {
    pub version: i32,
    pub broker: i32,
    pub event: i32,
}

impl LogDirEventNotification {
    pub const LOG_DIR_FAILURE: i32 = 1;

    pub fn failure(broker: i32) -> Self {
        Self {
            version: 1,
            broker,
            event: Self::LOG_DIR_FAILURE,
        }
    }
}

/// `/cluster/id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdZNode {
    pub version: String,
    pub id: String,
}

impl ClusterIdZNode {
    pub fn new(id: String) -> Self {
        Self {
            version: "1".into(),
            id,
        }
    }
}

/// Kafka's cluster id: a random UUID as its base64 text form.
pub fn generate_cluster_id() -> String {
    encode_topic_id(uuid::Uuid::new_v4())
}

/// `/latest_producer_id_block`: the last block of producer ids handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlockZNode {
    pub version: i32,
    pub broker: i32,
    pub block_start: String,
    pub block_end: String,
}

impl ProducerIdBlockZNode {
    pub fn new(broker: i32, start: i64, end: i64) -> Self {
        Self {
            version: 1,
            broker,
            block_start: start.to_string(),
            block_end: end.to_string(),
        }
    }

    pub fn range(&self) -> Option<(i64, i64)> {
        Some((self.block_start.parse().ok()?, self.block_end.parse().ok()?))
    }
}

/// Serializes a znode value as Kafka does (compact JSON).
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("znode types always serialize")
}

/// Parses a znode value; the error names the path for the log.
pub fn from_bytes<T: for<'de> Deserialize<'de>>(path: &str, data: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(data).map_err(|e| anyhow::anyhow!("malformed znode {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_state_reads_what_kafka_writes() {
        let kafka =
            br#"{"controller_epoch":3,"leader":2,"version":1,"leader_epoch":7,"isr":[2,3]}"#;
        let state: PartitionStateZNode = from_bytes("/s", kafka).unwrap();
        assert_eq!(state, PartitionStateZNode::new(3, 2, 7, vec![2, 3]));
        assert_eq!(to_bytes(&state), kafka.to_vec());
    }

    #[test]
    fn topic_znode_round_trips_assignment_and_topic_id() {
        let id = uuid::Uuid::new_v4();
        let assignment: BTreeMap<i32, Vec<i32>> = [(0, vec![1, 2, 3]), (1, vec![2, 3, 1])]
            .into_iter()
            .collect();
        let z = TopicZNode::new(&assignment, id);
        let back: TopicZNode = from_bytes("/t", &to_bytes(&z)).unwrap();
        assert_eq!(back.assignment(), assignment);
        assert_eq!(back.topic_uuid(), Some(id));
        assert_eq!(back.topic_id.as_ref().unwrap().len(), 22);
    }

    #[test]
    fn topic_znode_reads_kafkas_json() {
        let kafka = br#"{"partitions":{"0":[1,2]},"topic_id":"AAAAAAAAAAAAAAAAAAAAAQ","adding_replicas":{},"removing_replicas":{},"version":3}"#;
        let z: TopicZNode = from_bytes("/t", kafka).unwrap();
        assert_eq!(z.assignment()[&0], vec![1, 2]);
        assert_eq!(z.topic_uuid(), Some(uuid::Uuid::from_u128(1)));
    }

    #[test]
    fn broker_registration_matches_kafkas_fields() {
        let r = BrokerRegistration::new(
            vec![("PLAINTEXT".into(), "127.0.0.1".into(), 9092)],
            [("PLAINTEXT".to_string(), "PLAINTEXT".to_string())]
                .into_iter()
                .collect(),
            None,
        );
        let json: serde_json::Value = serde_json::from_slice(&to_bytes(&r)).unwrap();
        assert_eq!(json["version"], 5);
        assert_eq!(json["host"], "127.0.0.1");
        assert_eq!(json["port"], 9092);
        assert_eq!(json["endpoints"][0], "PLAINTEXT://127.0.0.1:9092");
        assert_eq!(json["jmx_port"], -1);
        assert_eq!(
            r.parsed_endpoints(),
            vec![("PLAINTEXT".into(), "127.0.0.1".into(), 9092)]
        );
    }

    #[test]
    fn controller_epoch_is_a_bare_integer() {
        assert_eq!(encode_controller_epoch(12), b"12".to_vec());
        assert_eq!(decode_controller_epoch(b"12"), Some(12));
        assert_eq!(decode_controller_epoch(b"x"), None);
    }
}
