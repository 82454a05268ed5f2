//! One scrape: a broker's counters plus the gauges read from its live state, written in
//! Prometheus' text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::actors::broker::LocalReplicas;
use crate::actors::group::coordinator::{ListGroups, OffsetFetch};
use crate::actors::group::GroupRouter;
use crate::actors::metadata_cache::MetadataCache;

use super::LATENCY_BUCKETS;
use crate::protocol::request_queue::RequestQueue;

/// What a scrape reads besides the counters.
#[derive(Clone)]
pub struct BrokerView {
    pub broker_id: i32,
    pub metadata: MetadataCache,
    pub replicas: LocalReplicas,
    pub groups: GroupRouter,
    pub request_queue: Arc<RequestQueue>,
}

/// `"` `\` and newlines escaped, as the format requires in label values.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes families in the text format.
#[derive(Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        if value.is_infinite() {
            let _ = writeln!(self.out, " {}", if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Lag of every (group, partition) this broker can compute: groups it coordinates, committed
/// offsets of partitions it holds a replica of.
async fn group_lags(view: &BrokerView) -> Vec<(String, String, i32, i64)> {
    let mut lags = Vec::new();
    for p in view.groups.hosted_partitions() {
        let Some(coordinator) = view.groups.coordinator_for_partition(p) else {
            continue;
        };
        let Ok(listed) = coordinator.send(ListGroups { states: vec![] }).await else {
            continue;
        };
        for group in listed.groups {
            let Ok(Ok(offsets)) = coordinator
                .send(OffsetFetch {
                    group_id: group.group_id.clone(),
                    require_stable: false,
                    partitions: None,
                })
                .await
            else {
                continue;
            };
            for o in offsets {
                if o.offset < 0 {
                    continue;
                }
                if let Some(h) = view.replicas.get(&o.tp.topic, o.tp.partition) {
                    let hwm = h.progress().high_watermark;
                    lags.push((
                        group.group_id.clone(),
                        o.tp.topic.clone(),
                        o.tp.partition,
                        (hwm - o.offset).max(0),
                    ));
                }
            }
        }
    }
    lags.sort();
    lags
}

/// The whole scrape of one broker.
pub async fn scrape(view: &BrokerView) -> String {
    let m = super::broker(view.broker_id);
    let snapshot = view.metadata.snapshot();
    let mut w = Writer::default();

    // Replication health.
    let mut replicas = view.replicas.all();
    replicas.sort_by(|a, b| {
        a.0.topic
            .cmp(&b.0.topic)
            .then(a.0.partition.cmp(&b.0.partition))
    });
    let under_replicated = replicas
        .iter()
        .filter(|(tp, h)| {
            let p = h.progress();
            let assigned = snapshot
                .topic(&tp.topic)
                .and_then(|t| t.partitions.get(&tp.partition))
                .map(|p| p.replicas.len())
                .unwrap_or(0);
            p.is_leader && !p.stopped && p.isr_size < assigned
        })
        .count();
    w.family(
        "weir_under_replicated_partitions",
        "gauge",
        "Partitions this broker leads whose ISR is smaller than their replica set.",
    );
    w.sample(
        "weir_under_replicated_partitions",
        &[],
        under_replicated as f64,
    );

    // The controller actor's own word, confirmed by the metadata it sent (which a leftover
    // flag of a crashed earlier life of this broker would contradict).
    let active =
        m.active_controller.load(Ordering::Relaxed) && snapshot.controller_id == view.broker_id;
    let offline = if active {
        snapshot
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.leader < 0)
            .count()
    } else {
        0
    };
    w.family(
        "weir_offline_partitions_count",
        "gauge",
        "Partitions without a live leader (reported by the active controller).",
    );
    w.sample("weir_offline_partitions_count", &[], offline as f64);
    w.family(
        "weir_active_controller_count",
        "gauge",
        "1 on the active controller, 0 elsewhere; the cluster's sum must be 1.",
    );
    w.sample(
        "weir_active_controller_count",
        &[],
        if active { 1.0 } else { 0.0 },
    );
    w.family(
        "weir_isr_shrinks_total",
        "counter",
        "Times a partition this broker leads lost ISR members.",
    );
    w.sample(
        "weir_isr_shrinks_total",
        &[],
        m.isr_shrinks.load(Ordering::Relaxed) as f64,
    );
    w.family(
        "weir_isr_expands_total",
        "counter",
        "Times a partition this broker leads took members back into its ISR.",
    );
    w.sample(
        "weir_isr_expands_total",
        &[],
        m.isr_expands.load(Ordering::Relaxed) as f64,
    );

    // The request queue (Kafka's request channel and request memory pool).
    let queue = &view.request_queue;
    w.family(
        "weir_request_queue_size",
        "gauge",
        "Client requests read and not yet handled or parked (bounded by queued.max.requests).",
    );
    w.sample(
        "weir_request_queue_size",
        &[],
        queue.queued_requests() as f64,
    );
    w.family(
        "weir_request_queue_bytes",
        "gauge",
        "Bytes of those requests (bounded by queued.max.request.bytes).",
    );
    w.sample("weir_request_queue_bytes", &[], queue.queued_bytes() as f64);
    w.family(
        "weir_request_queue_peak_bytes",
        "gauge",
        "The most request bytes queued at once since the broker started.",
    );
    w.sample(
        "weir_request_queue_peak_bytes",
        &[],
        queue.peak_bytes() as f64,
    );

    // Requests.
    let requests: BTreeMap<String, super::ApiStats> =
        m.requests.lock().unwrap_or_else(|p| p.into_inner()).clone();
    w.family(
        "weir_requests_total",
        "counter",
        "Kafka client requests answered, by API.",
    );
    for (api, s) in &requests {
        w.sample("weir_requests_total", &[("api", api)], s.count as f64);
    }
    w.family(
        "weir_request_duration_seconds",
        "histogram",
        "Time from a request's decoding to its response, by API.",
    );
    for (api, s) in &requests {
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += s.buckets[i];
            let le = bound.to_string();
            w.sample(
                "weir_request_duration_seconds_bucket",
                &[("api", api), ("le", &le)],
                cumulative as f64,
            );
        }
        w.sample(
            "weir_request_duration_seconds_bucket",
            &[("api", api), ("le", "+Inf")],
            s.count as f64,
        );
        w.sample(
            "weir_request_duration_seconds_sum",
            &[("api", api)],
            s.sum_seconds,
        );
        w.sample(
            "weir_request_duration_seconds_count",
            &[("api", api)],
            s.count as f64,
        );
    }

    // Bytes per topic.
    for (name, map, help) in [
        (
            "weir_topic_bytes_in_total",
            &m.bytes_in,
            "Record batch bytes produced to this broker, by topic.",
        ),
        (
            "weir_topic_bytes_out_total",
            &m.bytes_out,
            "Record batch bytes fetched by clients from this broker, by topic.",
        ),
    ] {
        w.family(name, "counter", help);
        let map = map.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (topic, bytes) in map {
            w.sample(name, &[("topic", &topic)], bytes as f64);
        }
    }

    // Offsets per partition replica.
    w.family(
        "weir_partition_log_end_offset",
        "gauge",
        "The log end offset of each partition replica on this broker.",
    );
    for (tp, h) in &replicas {
        let p = h.progress();
        let partition = tp.partition.to_string();
        w.sample(
            "weir_partition_log_end_offset",
            &[("topic", &tp.topic), ("partition", &partition)],
            p.log_end_offset as f64,
        );
    }
    w.family(
        "weir_partition_high_watermark",
        "gauge",
        "The high-water mark of each partition replica on this broker (exclusive).",
    );
    for (tp, h) in &replicas {
        let p = h.progress();
        let partition = tp.partition.to_string();
        w.sample(
            "weir_partition_high_watermark",
            &[("topic", &tp.topic), ("partition", &partition)],
            p.high_watermark as f64,
        );
    }

    // Consumer lag.
    w.family(
        "weir_consumer_group_lag",
        "gauge",
        "High-water mark minus the group's committed offset, for groups this broker coordinates.",
    );
    for (group, topic, partition, lag) in group_lags(view).await {
        let partition = partition.to_string();
        w.sample(
            "weir_consumer_group_lag",
            &[
                ("group", &group),
                ("topic", &topic),
                ("partition", &partition),
            ],
            lag as f64,
        );
    }
    w.finish()
}

/// Parses a scrape back into `name{labels} → value` (tests and the demos read it).
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((key.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_written_in_the_text_format_with_escaped_labels() {
        let mut w = Writer::default();
        w.family("weir_x_total", "counter", "An example.");
        w.sample("weir_x_total", &[("topic", "a\"b\\c")], 3.0);
        w.sample("weir_y", &[], f64::INFINITY);
        let text = w.finish();
        assert_eq!(
            text,
            "# HELP weir_x_total An example.\n# TYPE weir_x_total counter\nweir_x_total{topic=\"a\\\"b\\\\c\"} 3\nweir_y +Inf\n"
        );
        let parsed = parse(&text);
        assert_eq!(parsed["weir_x_total{topic=\"a\\\"b\\\\c\"}"], 3.0);
        assert!(parsed["weir_y"].is_infinite());
    }
}
