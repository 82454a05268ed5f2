//! Kafka client requests, observed at the front end's dispatch: each decoded request and its
//! answer, by API and partition, as trace events from `client:<client.id>` to the broker and
//! back; and for the metrics, the request count and latency per API and the bytes produced
//! and fetched per topic.
//!
//! The dispatcher is generic over the API, so requests and responses arrive here as
//! `&dyn Any` and are recognised by downcasting; an API without a description below is still
//! recorded (by name, without fields).

use std::any::Any;
use std::time::Instant;

use kafka_protocol::messages::*;

use crate::actors::metadata_cache::MetadataCache;
use crate::protocol::api::{ApiContext, Reply};
use crate::trace::event::{actor, kafka_error_name, plural, Category, Event};
use crate::trace::{self};

/// One request being observed, from dispatch to its answer.
pub struct Observed {
    broker: i32,
    api: ApiKey,
    started: Instant,
    /// The request event's id, when traced.
    id: Option<u64>,
    client: String,
    /// For per-topic bytes of Fetch responses named by topic id (v13+).
    metadata: Option<MetadataCache>,
}

/// Starts observing a decoded request; `None` (one atomic load) when neither a trace nor the
/// metrics run.
#[inline]
pub fn start<R: Any>(
    ctx: &ApiContext,
    api: ApiKey,
    header: &RequestHeader,
    request: &R,
) -> Option<Observed> {
    if !super::enabled() {
        return None;
    }
    Some(start_observing(ctx, api, header, request))
}

/// Finishes observing: records the answer (if any) and the latency.
#[inline]
pub fn finish<R: Any>(observed: Option<Observed>, reply: &Reply<R>) {
    if let Some(o) = observed {
        let response = match reply {
            Reply::Respond(r) => Some(r as &dyn Any),
            Reply::NoResponse | Reply::Close(_) => None,
        };
        let closed = matches!(reply, Reply::Close(_));
        finish_observing(o, response, closed);
    }
}

fn api_name(api: ApiKey) -> String {
    format!("{api:?}")
}

fn topic_name(t: &TopicName) -> &str {
    t.0.as_str()
}

fn start_observing(
    ctx: &ApiContext,
    api: ApiKey,
    header: &RequestHeader,
    request: &dyn Any,
) -> Observed {
    let client = actor::client(header.client_id.as_ref().map(|c| c.as_str()));
    if crate::metrics::enabled() {
        if let Some(p) = request.downcast_ref::<ProduceRequest>() {
            for t in &p.topic_data {
                let bytes: usize = t
                    .partition_data
                    .iter()
                    .map(|d| d.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                crate::metrics::bytes_in(ctx.broker_id, topic_name(&t.name), bytes as u64);
            }
        }
    }
    let id = trace::enabled().then(|| {
        let id = trace::next_id();
        let mut e = Event::new(
            Category::Client,
            client.clone(),
            actor::broker(ctx.broker_id),
            api_name(api),
        );
        e.id = Some(id);
        describe_request(&mut e, request, ctx);
        trace::emit(e);
        id
    });
    Observed {
        broker: ctx.broker_id,
        api,
        started: Instant::now(),
        id,
        client,
        metadata: (api == ApiKey::Fetch).then(|| ctx.metadata.clone()),
    }
}

fn finish_observing(o: Observed, response: Option<&dyn Any>, closed: bool) {
    let name = api_name(o.api);
    if crate::metrics::enabled() {
        crate::metrics::request(o.broker, &name, o.started.elapsed());
        if let (Some(f), Some(metadata)) = (
            response.and_then(|r| r.downcast_ref::<FetchResponse>()),
            &o.metadata,
        ) {
            let snapshot = metadata.snapshot();
            for t in &f.responses {
                let bytes: usize = t
                    .partitions
                    .iter()
                    .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                if bytes == 0 {
                    continue;
                }
                let topic = if t.topic.0.is_empty() {
                    snapshot
                        .topic_names_by_id
                        .get(&t.topic_id)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    topic_name(&t.topic).to_string()
                };
                crate::metrics::bytes_out(o.broker, &topic, bytes as u64);
            }
        }
    }
    let (Some(id), true) = (o.id, trace::enabled()) else {
        return;
    };
    let mut e = Event::new(Category::Client, actor::broker(o.broker), o.client, name);
    e.reply_to = Some(id);
    match response {
        Some(r) => describe_response(&mut e, r),
        None if closed => e.error = Some("CONNECTION_CLOSED".into()),
        // acks=0: the client expects nothing, and nothing is drawn.
        None => return,
    }
    trace::emit(e);
}

/// A member id as people read it: Kafka's are `<client.id>-<uuid>`.
fn short_member(id: &str) -> &str {
    if id.len() > 37 && id.as_bytes()[id.len() - 37] == b'-' {
        &id[..id.len() - 37]
    } else {
        id
    }
}

fn describe_request(e: &mut Event, request: &dyn Any, ctx: &ApiContext) {
    if let Some(r) = request.downcast_ref::<ProduceRequest>() {
        let tps: Vec<(&str, i32)> = r
            .topic_data
            .iter()
            .flat_map(|t| {
                t.partition_data
                    .iter()
                    .map(|p| (topic_name(&t.name), p.index))
            })
            .collect();
        e.set_partitions(tps);
        let bytes: usize = r
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
            .sum();
        let records: i64 = r
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .filter_map(|p| p.records.as_ref())
            .map(record_count)
            .sum();
        let acks = if r.acks == -1 {
            "all".to_string()
        } else {
            r.acks.to_string()
        };
        e.detail = Some(format!(
            "acks={acks}, {}, {}",
            plural(records, "record"),
            plural(bytes as i64, "byte")
        ));
    } else if let Some(r) = request.downcast_ref::<FetchRequest>() {
        let snapshot = ctx.metadata.snapshot();
        let names: Vec<String> = r
            .topics
            .iter()
            .map(|t| {
                if t.topic.0.is_empty() {
                    snapshot
                        .topic_names_by_id
                        .get(&t.topic_id)
                        .cloned()
                        .unwrap_or_else(|| t.topic_id.to_string())
                } else {
                    topic_name(&t.topic).to_string()
                }
            })
            .collect();
        let tps: Vec<(&str, i32)> = r
            .topics
            .iter()
            .zip(&names)
            .flat_map(|(t, n)| t.partitions.iter().map(move |p| (n.as_str(), p.partition)))
            .collect();
        e.set_partitions(tps);
        if let [t] = r.topics.as_slice() {
            if let [p] = t.partitions.as_slice() {
                e.offset = Some(p.fetch_offset);
            }
        }
    } else if let Some(r) = request.downcast_ref::<MetadataRequest>() {
        e.detail = Some(match &r.topics {
            None => "all topics".into(),
            Some(ts) => {
                let names: Vec<&str> = ts
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(topic_name))
                    .collect();
                if let [one] = names.as_slice() {
                    e.topic = Some(one.to_string());
                    String::new()
                } else {
                    names.join(", ")
                }
            }
        });
        if e.detail.as_deref() == Some("") {
            e.detail = None;
        }
    } else if let Some(r) = request.downcast_ref::<CreateTopicsRequest>() {
        if let [t] = r.topics.as_slice() {
            e.topic = Some(topic_name(&t.name).to_string());
            e.detail = Some(format!(
                "{} partitions, RF {}",
                t.num_partitions, t.replication_factor
            ));
        } else {
            let names: Vec<&str> = r.topics.iter().map(|t| topic_name(&t.name)).collect();
            e.detail = Some(names.join(", "));
        }
    } else if let Some(r) = request.downcast_ref::<ListOffsetsRequest>() {
        let tps: Vec<(&str, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (topic_name(&t.name), p.partition_index))
            })
            .collect();
        e.set_partitions(tps);
    } else if let Some(r) = request.downcast_ref::<FindCoordinatorRequest>() {
        let keys: Vec<&str> = if r.coordinator_keys.is_empty() {
            vec![r.key.as_str()]
        } else {
            r.coordinator_keys.iter().map(|k| k.as_str()).collect()
        };
        e.detail = Some(format!("group {}", keys.join(", ")));
    } else if let Some(r) = request.downcast_ref::<JoinGroupRequest>() {
        let member = if r.member_id.is_empty() {
            "new member".to_string()
        } else {
            format!("member {}", short_member(&r.member_id))
        };
        e.detail = Some(format!("group {}, {member}", r.group_id.0.as_str()));
    } else if let Some(r) = request.downcast_ref::<SyncGroupRequest>() {
        e.detail = Some(format!(
            "group {}, generation {}, member {}{}",
            r.group_id.0.as_str(),
            r.generation_id,
            short_member(&r.member_id),
            if r.assignments.is_empty() {
                String::new()
            } else {
                format!(", assignments for {} members", r.assignments.len())
            }
        ));
    } else if let Some(r) = request.downcast_ref::<HeartbeatRequest>() {
        e.detail = Some(format!(
            "group {}, generation {}, member {}",
            r.group_id.0.as_str(),
            r.generation_id,
            short_member(&r.member_id)
        ));
    } else if let Some(r) = request.downcast_ref::<LeaveGroupRequest>() {
        let members: Vec<&str> = if r.members.is_empty() {
            vec![short_member(&r.member_id)]
        } else {
            r.members
                .iter()
                .map(|m| short_member(&m.member_id))
                .collect()
        };
        e.detail = Some(format!(
            "group {}, member {}",
            r.group_id.0.as_str(),
            members.join(", ")
        ));
    } else if let Some(r) = request.downcast_ref::<OffsetCommitRequest>() {
        let tps: Vec<(&str, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (topic_name(&t.name), p.partition_index))
            })
            .collect();
        e.set_partitions(tps);
        let offsets: Vec<String> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| format!("{}@{}", p.partition_index, p.committed_offset))
            .collect();
        e.detail = Some(format!(
            "group {}, offsets {}",
            r.group_id.0.as_str(),
            offsets.join(" ")
        ));
    } else if let Some(r) = request.downcast_ref::<OffsetFetchRequest>() {
        let groups: Vec<&str> = if r.groups.is_empty() {
            vec![r.group_id.0.as_str()]
        } else {
            r.groups.iter().map(|g| g.group_id.0.as_str()).collect()
        };
        e.detail = Some(format!("group {}", groups.join(", ")));
    }
}

/// Records in a produce's batches (the v2 header's count), without decoding them.
fn record_count(bytes: &bytes::Bytes) -> i64 {
    let mut rest = &bytes[..];
    let mut count = 0i64;
    // Batch: baseOffset(8) length(4) … records count at byte 57.
    while rest.len() >= 61 {
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        count += i64::from(i32::from_be_bytes([rest[57], rest[58], rest[59], rest[60]]));
        let total = 12 + length;
        if total > rest.len() || length == 0 {
            break;
        }
        rest = &rest[total..];
    }
    count
}

fn error(code: i16) -> Option<String> {
    (code != 0).then(|| kafka_error_name(code))
}

/// The first error among `codes`, by Kafka's name.
fn first_error(codes: impl IntoIterator<Item = i16>) -> Option<String> {
    codes.into_iter().find(|c| *c != 0).map(kafka_error_name)
}

/// Partitions a consumer was assigned, from a SyncGroup answer's bytes.
fn assignment(bytes: &bytes::Bytes) -> Option<String> {
    let parts: Vec<String> = crate::actors::group::metadata::consumer_assignment(bytes)?
        .into_iter()
        .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| format!("{topic}-{p}")))
        .collect();
    Some(if parts.is_empty() {
        "assigned nothing".into()
    } else {
        format!("assigned {}", parts.join(" "))
    })
}

fn describe_response(e: &mut Event, response: &dyn Any) {
    if let Some(r) = response.downcast_ref::<ProduceResponse>() {
        let tps: Vec<(&str, i32)> = r
            .responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .map(|p| (topic_name(&t.name), p.index))
            })
            .collect();
        e.set_partitions(tps);
        let parts: Vec<&produce_response::PartitionProduceResponse> = r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .collect();
        if let [p] = parts.as_slice() {
            if p.error_code == 0 {
                e.offset = Some(p.base_offset);
            }
        }
        e.error = first_error(parts.iter().map(|p| p.error_code));
    } else if let Some(r) = response.downcast_ref::<FetchResponse>() {
        let parts: Vec<&fetch_response::PartitionData> =
            r.responses.iter().flat_map(|t| &t.partitions).collect();
        if let [p] = parts.as_slice() {
            e.hwm = Some(p.high_watermark);
        }
        let bytes: usize = parts
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
            .sum();
        let records: i64 = parts
            .iter()
            .filter_map(|p| p.records.as_ref())
            .map(record_count)
            .sum();
        if bytes > 0 {
            e.detail = Some(format!(
                "{}, {}",
                plural(records, "record"),
                plural(bytes as i64, "byte")
            ));
        }
        e.error =
            first_error(std::iter::once(r.error_code).chain(parts.iter().map(|p| p.error_code)));
    } else if let Some(r) = response.downcast_ref::<MetadataResponse>() {
        let mut leaders: Vec<String> = Vec::new();
        for t in &r.topics {
            let name = t.name.as_ref().map(topic_name).unwrap_or("?");
            if t.error_code != 0 {
                leaders.push(format!("{name} {}", kafka_error_name(t.error_code)));
                continue;
            }
            if name.starts_with("__") {
                continue;
            }
            for p in &t.partitions {
                leaders.push(format!("{name}-{}→{}", p.partition_index, p.leader_id.0));
            }
        }
        const SHOWN: usize = 6;
        let total = leaders.len();
        leaders.truncate(SHOWN);
        if total > SHOWN {
            leaders.push(format!("… {total} partitions"));
        }
        e.detail = Some(format!(
            "controller {}{}{}",
            r.controller_id.0,
            if leaders.is_empty() { "" } else { ", leaders " },
            leaders.join(" ")
        ));
    } else if let Some(r) = response.downcast_ref::<CreateTopicsResponse>() {
        e.error = first_error(r.topics.iter().map(|t| t.error_code));
    } else if let Some(r) = response.downcast_ref::<ListOffsetsResponse>() {
        let parts: Vec<&list_offsets_response::ListOffsetsPartitionResponse> =
            r.topics.iter().flat_map(|t| &t.partitions).collect();
        if let [p] = parts.as_slice() {
            e.offset = Some(p.offset);
        }
        e.error = first_error(parts.iter().map(|p| p.error_code));
    } else if let Some(r) = response.downcast_ref::<FindCoordinatorResponse>() {
        if r.coordinators.is_empty() {
            e.error = error(r.error_code);
            e.detail = Some(format!("coordinator {}", r.node_id.0));
        } else {
            e.error = first_error(r.coordinators.iter().map(|c| c.error_code));
            let nodes: Vec<String> = r
                .coordinators
                .iter()
                .map(|c| c.node_id.0.to_string())
                .collect();
            e.detail = Some(format!("coordinator {}", nodes.join(", ")));
        }
    } else if let Some(r) = response.downcast_ref::<JoinGroupResponse>() {
        e.error = error(r.error_code);
        if r.error_code == 0 {
            let role = if r.leader == r.member_id {
                format!(", leader of {} members", r.members.len())
            } else {
                String::new()
            };
            e.detail = Some(format!(
                "generation {}, member {}{role}",
                r.generation_id,
                short_member(&r.member_id)
            ));
        }
    } else if let Some(r) = response.downcast_ref::<SyncGroupResponse>() {
        e.error = error(r.error_code);
        e.detail = assignment(&r.assignment);
    } else if let Some(r) = response.downcast_ref::<HeartbeatResponse>() {
        e.error = error(r.error_code);
    } else if let Some(r) = response.downcast_ref::<LeaveGroupResponse>() {
        e.error = first_error(
            std::iter::once(r.error_code).chain(r.members.iter().map(|m| m.error_code)),
        );
    } else if let Some(r) = response.downcast_ref::<OffsetCommitResponse>() {
        e.error = first_error(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        );
    } else if let Some(r) = response.downcast_ref::<OffsetFetchResponse>() {
        e.error = error(r.error_code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_shorten_to_their_client_id() {
        assert_eq!(
            short_member("C1-0b5a3f0e-8a47-4d35-9b7e-6f1f1b2c3d4e"),
            "C1"
        );
        assert_eq!(short_member("static-member"), "static-member");
    }

    #[test]
    fn record_counts_come_from_the_batch_headers() {
        use crate::demo::client::batch;
        let v = |s: &'static str| (None, bytes::Bytes::from_static(s.as_bytes()));
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&batch(&[v("a"), v("b"), v("c")]));
        buf.extend_from_slice(&batch(&[v("d")]));
        assert_eq!(record_count(&buf.freeze()), 4);
    }
}
