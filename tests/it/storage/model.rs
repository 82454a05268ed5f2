//! The proptest model of a partition log: any sequence of appends, rolls, truncations,
//! retention, DeleteRecords and clean or unclean reopens leaves exactly the segments, offsets
//! and stored batch bytes a simple in-memory model predicts.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use proptest::prelude::*;
use weir::config::TopicConfig;
use weir::storage::{validate_client_batches, LogLoadParams, PartitionLog, TopicPartition};

use super::{client_batch, read_all};

const SEGMENT_BYTES: u64 = 1024;
/// Every record's timestamp lies in [TS, TS + 6): appends never trigger a time roll.
const TS: i64 = 1_000_000;
const SEGMENT_MS: i64 = 1_000;

fn config(retention_bytes: i64) -> TopicConfig {
    TopicConfig {
        segment_bytes: SEGMENT_BYTES as i32,
        segment_index_bytes: 4096,
        index_interval_bytes: 128,
        segment_ms: SEGMENT_MS,
        retention_ms: -1,
        retention_bytes,
        ..TopicConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        codec: usize,
    },
    Roll,
    /// Follower truncation to `fraction/255` of the log end offset.
    Truncate {
        fraction: u8,
    },
    /// `retention.bytes` = `units * 300`, with the high-water mark at the log end.
    Retain {
        units: i64,
    },
    /// DeleteRecords to `fraction/255` of the way from log start to log end.
    DeleteRecords {
        fraction: u8,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..5).prop_map(|(records, codec)| Op::Append { records, codec }),
        1 => Just(Op::Roll),
        1 => any::<u8>().prop_map(|fraction| Op::Truncate { fraction }),
        1 => (0i64..8).prop_map(|units| Op::Retain { units }),
        1 => any::<u8>().prop_map(|fraction| Op::DeleteRecords { fraction }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[derive(Debug, Clone)]
struct ModelBatch {
    last: i64,
    /// The bytes the log must store: the client's, with base offset and leader epoch set.
    bytes: Bytes,
}

#[derive(Debug, Clone)]
struct ModelSegment {
    base: i64,
    batches: Vec<ModelBatch>,
}

impl ModelSegment {
    fn size(&self) -> u64 {
        self.batches.iter().map(|b| b.bytes.len() as u64).sum()
    }
}

#[derive(Debug)]
struct Model {
    segments: Vec<ModelSegment>,
    log_start: i64,
    log_end: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            segments: vec![ModelSegment {
                base: 0,
                batches: Vec::new(),
            }],
            log_start: 0,
            log_end: 0,
        }
    }

    fn active(&mut self) -> &mut ModelSegment {
        self.segments
            .last_mut()
            .expect("a model always has a segment")
    }

    fn roll(&mut self) {
        let base = self.log_end;
        self.segments.push(ModelSegment {
            base,
            batches: Vec::new(),
        });
    }

    fn append(&mut self, client: &Bytes, records: usize) {
        let size = client.len() as u64;
        let active_size = self.active().size();
        if active_size > 0 && active_size + size > SEGMENT_BYTES {
            self.roll();
        }
        let mut bytes = BytesMut::from(&client[..]);
        bytes[..8].copy_from_slice(&self.log_end.to_be_bytes());
        bytes[12..16].copy_from_slice(&0i32.to_be_bytes());
        let last = self.log_end + records as i64 - 1;
        self.active().batches.push(ModelBatch {
            last,
            bytes: bytes.freeze(),
        });
        self.log_end = last + 1;
    }

    fn truncate(&mut self, to: i64) {
        if to >= self.log_end {
            return;
        }
        if to < self.segments[0].base {
            self.segments = vec![ModelSegment {
                base: to,
                batches: Vec::new(),
            }];
            self.log_start = to;
            self.log_end = to;
            return;
        }
        self.segments.retain(|s| s.base <= to);
        let active = self.active();
        active.batches.retain(|b| b.last < to);
        let base = active.base;
        self.log_end = active.batches.last().map_or(base, |b| b.last + 1);
        self.log_start = self.log_start.min(self.log_end);
    }

    /// Kafka's deletion rule, with the high-water mark at the log end.
    fn delete_old(&mut self, mut predicate: impl FnMut(&ModelSegment, Option<i64>) -> bool) {
        let mut n = 0;
        for i in 0..self.segments.len() {
            let next = self.segments.get(i + 1).map(|s| s.base);
            let seg = &self.segments[i];
            let last_and_empty = next.is_none() && seg.size() == 0;
            if !last_and_empty && predicate(seg, next) {
                n += 1;
            } else {
                break;
            }
        }
        if n == 0 {
            return;
        }
        if n == self.segments.len() {
            self.roll();
        }
        self.segments.drain(..n);
        self.log_start = self.log_start.max(self.segments[0].base);
    }

    fn retain_bytes(&mut self, retention: i64) {
        let mut excess = self.segments.iter().map(|s| s.size() as i64).sum::<i64>() - retention;
        self.delete_old(|seg, _| {
            let go = excess - seg.size() as i64 >= 0;
            if go {
                excess -= seg.size() as i64;
            }
            go
        });
        self.delete_below_log_start();
    }

    fn delete_below_log_start(&mut self) {
        let start = self.log_start;
        self.delete_old(|_, next| next.is_some_and(|n| n <= start));
    }

    fn delete_records(&mut self, offset: i64) {
        if offset > self.log_start {
            self.log_start = offset;
            self.delete_below_log_start();
        }
    }

    fn expected_bytes(&self) -> Vec<Bytes> {
        self.segments
            .iter()
            .flat_map(|s| s.batches.iter())
            .filter(|b| b.last >= self.log_start)
            .map(|b| b.bytes.clone())
            .collect()
    }
}

fn load(dir: &Path, model: &Model, retention: i64, clean: bool) -> PartitionLog {
    let params = LogLoadParams {
        recovery_point: if clean { model.log_end } else { 0 },
        log_start_offset: model.log_start,
        high_watermark: model.log_end,
        clean_shutdown: clean,
    };
    PartitionLog::load(
        dir,
        TopicPartition::new("model", 0),
        &config(retention),
        params,
    )
    .expect("load the log")
}

fn check(log: &PartitionLog, model: &Model, dir: &Path, step: usize, op: &Op) {
    let ctx = format!("after step {step} ({op:?})");
    assert_eq!(log.log_end_offset(), model.log_end, "log end {ctx}");
    assert_eq!(log.log_start_offset(), model.log_start, "log start {ctx}");
    let bases: Vec<i64> = model.segments.iter().map(|s| s.base).collect();
    assert_eq!(log.segment_base_offsets(), bases, "segments {ctx}");
    for s in &model.segments {
        let path = dir.join(format!("{:020}.log", s.base));
        let len = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or(u64::MAX);
        assert_eq!(len, s.size(), "{} {ctx}", path.display());
    }
    let served: Vec<Bytes> = read_all(log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(served, model.expected_bytes(), "stored batches {ctx}");
}

fn run(ops: &[Op]) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("model-0");
    let mut model = Model::new();
    let mut retention = -1;
    let mut log = Some(load(&dir, &model, retention, false));
    for (step, op) in ops.iter().enumerate() {
        let l = log.as_mut().expect("the log is open between steps");
        match *op {
            Op::Append { records, codec } => {
                let client = client_batch(records, TS, CODECS[codec]);
                let v = validate_client_batches(client.clone(), 1 << 20, false).expect("valid");
                let info = l.append_as_leader(v, 0, TS).expect("append");
                assert_eq!(info.first_offset, model.log_end, "step {step}");
                model.append(&client, records);
            }
            Op::Roll => {
                l.maybe_roll(TS + 10 * SEGMENT_MS).expect("roll");
                if model.active().size() > 0 {
                    model.roll();
                }
            }
            Op::Truncate { fraction } => {
                let to = model.log_end * fraction as i64 / 255;
                l.truncate_to(to).expect("truncate");
                model.truncate(to);
            }
            Op::Retain { units } => {
                retention = units * 300;
                l.update_config(&config(retention));
                l.update_high_watermark(l.log_end_offset());
                l.apply_retention(TS).expect("retention");
                model.retain_bytes(retention);
            }
            Op::DeleteRecords { fraction } => {
                let offset =
                    model.log_start + (model.log_end - model.log_start) * fraction as i64 / 255;
                l.update_high_watermark(l.log_end_offset());
                let start = l.delete_records_before(offset).expect("delete records");
                model.delete_records(offset);
                assert_eq!(start, model.log_start, "step {step}");
            }
            Op::Reopen { clean } => {
                let old = log.take().expect("open log");
                if clean {
                    old.close().expect("close");
                } else {
                    drop(old);
                }
                log = Some(load(&dir, &model, retention, clean));
            }
        }
        check(log.as_ref().expect("open log"), &model, &dir, step, op);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_sequence_of_operations_leaves_exactly_the_modelled_batches(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        run(&ops);
    }
}

#[test]
fn model_covers_a_hand_written_sequence() {
    use Op::*;
    run(&[
        Append {
            records: 3,
            codec: 0,
        },
        Append {
            records: 5,
            codec: 1,
        },
        Roll,
        Append {
            records: 2,
            codec: 4,
        },
        Reopen { clean: false },
        DeleteRecords { fraction: 128 },
        Append {
            records: 4,
            codec: 2,
        },
        Truncate { fraction: 200 },
        Retain { units: 0 },
        Reopen { clean: true },
        Append {
            records: 1,
            codec: 3,
        },
    ]);
}
