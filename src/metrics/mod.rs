//! Operator metrics in Prometheus' text format: what Kafka operators watch, one endpoint per
//! broker (`metrics.port`, off unless set; `weir cluster` gives broker i the port
//! `metrics.port + i − 1`, or free ports for 0).
//!
//! | metric | type | Kafka's name |
//! |---|---|---|
//! | `weir_under_replicated_partitions` | gauge | `ReplicaManager.UnderReplicatedPartitions` |
//! | `weir_offline_partitions_count` | gauge (the active controller's; 0 elsewhere) | `KafkaController.OfflinePartitionsCount` |
//! | `weir_active_controller_count` | gauge | `KafkaController.ActiveControllerCount` |
//! | `weir_isr_shrinks_total`, `weir_isr_expands_total` | counter | `ReplicaManager.IsrShrinksPerSec`, `IsrExpandsPerSec` |
//! | `weir_requests_total{api}` | counter | `RequestMetrics.RequestsPerSec` |
//! | `weir_request_duration_seconds{api}` | histogram | `RequestMetrics.TotalTimeMs` |
//! | `weir_topic_bytes_in_total{topic}`, `weir_topic_bytes_out_total{topic}` | counter | `BrokerTopicMetrics.BytesInPerSec`, `BytesOutPerSec` |
//! | `weir_partition_log_end_offset{topic,partition}`, `weir_partition_high_watermark{…}` | gauge | `Log.LogEndOffset`, the replica's high-water mark |
//! | `weir_consumer_group_lag{group,topic,partition}` | gauge | consumer lag as `kafka-consumer-groups.sh` computes it |
//! | `weir_request_queue_size`, `weir_request_queue_bytes` | gauge | `RequestChannel.RequestQueueSize`, `SocketServer.MemoryPoolUsed` |
//! | `weir_request_queue_peak_bytes` | gauge | weir's own: the most request bytes queued at once |
//!
//! Counters are kept only while some endpoint serves ([`enabled`]): the request path checks
//! one relaxed atomic otherwise. Gauges are read from the broker's live state at scrape time
//! ([`exposition`]); group lag is the partition's high-water mark as this broker's replica
//! knows it minus the group's committed offset, for groups this broker coordinates and
//! partitions it holds a replica of.

pub mod endpoint;
pub mod exposition;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use endpoint::{endpoint_addr, serve};

/// Whether any metrics endpoint serves in this process.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Per-broker counters. Several brokers share a process in `weir cluster`.
static REGISTRY: RwLock<Option<HashMap<i32, Arc<BrokerMetrics>>>> = RwLock::new(None);

/// Whether counters are being kept.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Upper bounds of the request latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One API's request counter and latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiStats {
    pub count: u64,
    pub sum_seconds: f64,
    /// Non-cumulative counts per [`LATENCY_BUCKETS`] bound; the last slot is `+Inf`.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
}

impl ApiStats {
    fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum_seconds += seconds;
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot] += 1;
    }
}

/// One broker's counters.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    /// Whether this broker's controller is the active one.
    pub active_controller: AtomicBool,
    pub isr_shrinks: AtomicU64,
    pub isr_expands: AtomicU64,
    /// By API name. A std Mutex: one short update per request, never across an await.
    pub requests: Mutex<BTreeMap<String, ApiStats>>,
    pub bytes_in: Mutex<BTreeMap<String, u64>>,
    pub bytes_out: Mutex<BTreeMap<String, u64>>,
}

/// Broker `id`'s counters (created on first use).
pub fn broker(id: i32) -> Arc<BrokerMetrics> {
    if let Some(m) = REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|r| r.get(&id))
    {
        return m.clone();
    }
    REGISTRY
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .entry(id)
        .or_default()
        .clone()
}

/// A broker (re)starting: its counters start from zero, as a new process's would. Whether
/// it is the active controller is kept: its controller may have been elected before the
/// endpoint started (the scrape also checks the broker's metadata, so a flag left over from
/// a crashed life does not count).
pub fn reset(id: i32) {
    let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    let registry = registry.get_or_insert_with(HashMap::new);
    let active = registry
        .get(&id)
        .is_some_and(|m| m.active_controller.load(Ordering::Relaxed));
    let fresh = BrokerMetrics::default();
    fresh.active_controller.store(active, Ordering::Relaxed);
    registry.insert(id, Arc::new(fresh));
}

/// Broker `broker`'s controller became (or stopped being) the active controller. Kept
/// whether or not metrics are on: elections are rare and the endpoint may start later.
pub fn controller_changed(broker: i32, active: bool) {
    self::broker(broker)
        .active_controller
        .store(active, Ordering::Relaxed);
}

/// A leader's ISR shrank or expanded.
pub fn isr_changed(broker: i32, shrank: bool) {
    if enabled() {
        let m = self::broker(broker);
        if shrank {
            m.isr_shrinks.fetch_add(1, Ordering::Relaxed);
        } else {
            m.isr_expands.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One client request of `api` answered after `elapsed`.
pub fn request(broker: i32, api: &str, elapsed: Duration) {
    let m = self::broker(broker);
    let mut requests = m.requests.lock().unwrap_or_else(|p| p.into_inner());
    match requests.get_mut(api) {
        Some(stats) => stats.observe(elapsed.as_secs_f64()),
        None => {
            let mut stats = ApiStats::default();
            stats.observe(elapsed.as_secs_f64());
            requests.insert(api.to_string(), stats);
        }
    }
}

fn add_bytes(map: &Mutex<BTreeMap<String, u64>>, topic: &str, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    match map.get_mut(topic) {
        Some(total) => *total += bytes,
        None => {
            map.insert(topic.to_string(), bytes);
        }
    }
}

/// Produced bytes for `topic` (record batches as received).
pub fn bytes_in(broker: i32, topic: &str, bytes: u64) {
    add_bytes(&self::broker(broker).bytes_in, topic, bytes);
}

/// Fetched bytes for `topic` (record batches as sent to clients).
pub fn bytes_out(broker: i32, topic: &str, bytes: u64) {
    add_bytes(&self::broker(broker).bytes_out, topic, bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let mut s = ApiStats::default();
        s.observe(0.0002);
        s.observe(0.003);
        s.observe(99.0);
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[3], 1);
        assert_eq!(s.buckets[LATENCY_BUCKETS.len()], 1);
        assert!((s.sum_seconds - 99.0032).abs() < 1e-9);
    }
}
