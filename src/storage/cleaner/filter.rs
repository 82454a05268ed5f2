//! What a clean keeps of one stored batch (Kafka's `MemoryRecords.filterTo` with the
//! `LogCleaner`'s record filter).
//!
//! A record stays when it is the latest of its key (the offset map says no later offset has
//! that key) and either has a value or is a tombstone whose delete horizon has not passed;
//! records beyond what the map covers always stay; records without a key go (a compacted topic
//! refuses them, so they can only predate the policy). A batch whose records all stay, and that
//! needs no new horizon, is copied byte for byte. Otherwise the survivors are written into a
//! batch with the same base offset, last offset delta, producer id, epoch, base sequence and
//! partition leader epoch (so offsets, the producer's last sequence and the epoch cache are
//! what they were), re-compressed with the batch's codec.
//!
//! Tombstones get KIP-534's delete horizon the first time a clean keeps them: the batch's base
//! timestamp becomes `now + delete.retention.ms` with the delete-horizon attribute set and the
//! records' timestamp deltas are rebased on it, so every record keeps its timestamp. Cleans
//! from the horizon on drop them.
//!
//! A batch left with no record is dropped, except (as an empty header, Kafka's
//! `writeEmptyHeader`) the last batch of an active idempotent producer, which carries its
//! last sequence. The cleaner also writes [`write_empty_header`] for the last batch of each
//! cleaned segment when it was dropped, which keeps the segment's offset range visible (the
//! swap's crash recovery relies on it).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::records::{Compression, TimestampType};

use super::offset_map::OffsetMap;
use crate::storage::batch::{self, BatchError, BatchHeader, RecordView, DELETE_HORIZON_BIT};

/// What the filter needs besides the batch.
pub(crate) struct FilterContext<'a> {
    pub map: &'a OffsetMap,
    /// The clean's start time: horizons are set from it and compared with it.
    pub now_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// Active idempotent producers' last offsets (Kafka's `lastRecordsOfActiveProducers`).
    pub active_producers: &'a HashMap<i64, i64>,
}

/// What happened to one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Filtered {
    pub records_read: usize,
    pub records_kept: usize,
    /// The batch went out unchanged.
    pub verbatim: bool,
    /// Something was written for the batch (records, or an empty header).
    pub written: bool,
    /// The batch went out holding tombstones, whose horizon this is.
    pub tombstone_horizon: Option<i64>,
}

/// Filters the whole batch `bytes` (header `h`) into `out`, pushing the header of what was
/// written (if anything) to `headers`.
pub(crate) fn filter_batch(
    bytes: &[u8],
    h: &BatchHeader,
    ctx: &FilterContext<'_>,
    out: &mut Vec<u8>,
    headers: &mut Vec<BatchHeader>,
) -> Result<Filtered, BatchError> {
    // A corrupt batch must not be re-encoded under a fresh CRC.
    batch::verify_crc(bytes, h)?;
    if h.is_control() {
        // weir writes no control batches (no transactions); keep any as they are.
        out.extend_from_slice(bytes);
        headers.push(*h);
        return Ok(Filtered {
            verbatim: true,
            written: true,
            ..Filtered::default()
        });
    }
    let payload = records_section(bytes, h)?;
    let horizon = h.delete_horizon_ms();
    let latest = ctx.map.latest_offset();
    let mut kept: Vec<RecordView> = Vec::new();
    let mut dropped = false;
    let mut has_tombstone = false;
    let read = batch::walk_records(
        &mut batch::SliceSource::new(&payload),
        h.records_count,
        |r| {
            let offset = h.base_offset.saturating_add(r.offset_delta as i64);
            let keep = if offset > latest {
                true
            } else if let Some(key) = &r.key {
                let newest = ctx.map.get(&payload[key.clone()]);
                offset >= newest
                    && (r.has_value || horizon.is_none_or(|horizon| ctx.now_ms < horizon))
            } else {
                false
            };
            if keep {
                has_tombstone |= !r.has_value;
                kept.push(r);
            } else {
                dropped = true;
            }
            Ok(std::ops::ControlFlow::Continue(()))
        },
    )?;
    if read != h.records_count as usize {
        return Err(BatchError::InvalidRecord(format!(
            "batch at offset {} declares {} records but holds {read}",
            h.base_offset, h.records_count
        )));
    }
    let mut result = Filtered {
        records_read: read,
        records_kept: kept.len(),
        written: !kept.is_empty(),
        ..Filtered::default()
    };
    let needs_horizon = has_tombstone && horizon.is_none();
    if !kept.is_empty() {
        if !dropped && !needs_horizon {
            out.extend_from_slice(bytes);
            headers.push(*h);
            result.verbatim = true;
            result.tombstone_horizon = horizon.filter(|_| has_tombstone);
            return Ok(result);
        }
        let (base_timestamp, attributes) = if needs_horizon {
            (
                ctx.now_ms.saturating_add(ctx.delete_retention_ms.max(0)),
                h.attributes | DELETE_HORIZON_BIT,
            )
        } else {
            (h.base_timestamp, h.attributes)
        };
        let mut records = Vec::with_capacity(payload.len());
        let mut max_timestamp = i64::MIN;
        for r in &kept {
            let timestamp = h.base_timestamp.saturating_add(r.timestamp_delta);
            max_timestamp = max_timestamp.max(timestamp);
            if base_timestamp == h.base_timestamp {
                records.extend_from_slice(&payload[r.record.clone()]);
            } else {
                rebase_record(
                    &mut records,
                    &payload,
                    r,
                    timestamp.saturating_sub(base_timestamp),
                );
            }
        }
        if h.timestamp_type() == TimestampType::LogAppend {
            max_timestamp = h.max_timestamp;
        }
        let section = batch::compress(h.compression(), &records)?;
        let written = batch::write_batch(
            out,
            &BatchHeader {
                attributes,
                base_timestamp,
                max_timestamp,
                records_count: kept.len() as i32,
                ..*h
            },
            &section,
        );
        headers.push(written);
        result.tombstone_horizon = has_tombstone.then_some(base_timestamp);
        return Ok(result);
    }
    let active_producer_end =
        h.has_producer_id() && ctx.active_producers.get(&h.producer_id) == Some(&h.last_offset());
    if active_producer_end {
        headers.push(write_empty_header(out, h));
        result.written = true;
    }
    Ok(result)
}

/// Writes the header of batch `h` with no records (Kafka's `writeEmptyHeader`: no
/// compression, no base timestamp, the same offsets, producer and epoch); returns it.
pub(crate) fn write_empty_header(out: &mut Vec<u8>, h: &BatchHeader) -> BatchHeader {
    let empty = BatchHeader {
        attributes: h.attributes & !(0x07 | DELETE_HORIZON_BIT),
        base_timestamp: -1,
        records_count: 0,
        ..*h
    };
    batch::write_batch(out, &empty, &[])
}

/// The records of a whole stored batch: borrowed in place, or decompressed.
pub(crate) enum RecordsSection<'a> {
    Stored(&'a [u8]),
    Decompressed(Bytes),
}

impl std::ops::Deref for RecordsSection<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            RecordsSection::Stored(b) => b,
            RecordsSection::Decompressed(b) => b,
        }
    }
}

/// The records section of the whole batch `bytes`, decompressed only when compressed.
pub(crate) fn records_section<'a>(
    bytes: &'a [u8],
    h: &BatchHeader,
) -> Result<RecordsSection<'a>, BatchError> {
    let section = &bytes[BatchHeader::SIZE..];
    Ok(match h.compression() {
        Compression::None => RecordsSection::Stored(section),
        codec => {
            RecordsSection::Decompressed(batch::decompress(codec, Bytes::copy_from_slice(section))?)
        }
    })
}

/// Re-encodes record `r` of `payload` with a new timestamp delta (its length prefix changes
/// with it); every other field is copied as is.
fn rebase_record(out: &mut Vec<u8>, payload: &[u8], r: &RecordView, timestamp_delta: i64) {
    let mut body = Vec::with_capacity(r.record.len() + 8);
    body.push(0); // record attributes, unused in v2
    batch::put_varlong(&mut body, timestamp_delta);
    batch::put_varint(&mut body, r.offset_delta);
    body.extend_from_slice(&payload[r.after_deltas.clone()]);
    batch::put_varint(out, body.len() as i32);
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::tests::records_batch;
    use crate::storage::batch::{
        set_base_offset, set_partition_leader_epoch, visit_record_offsets_and_timestamps,
    };
    use bytes::BytesMut;
    use kafka_protocol::records::RecordBatchDecoder;

    /// One batch at `base`: `(key, value)` records, timestamps 1000, 1001, ..., leader
    /// epoch 3.
    fn stored_batch(
        base: i64,
        records: &[(&str, Option<&str>)],
        compression: Compression,
        producer: Option<(i64, i16, i32)>,
    ) -> (Bytes, BatchHeader) {
        let records: Vec<_> = records.iter().map(|(k, v)| (Some(*k), *v)).collect();
        at_offset(records_batch(&records, 1000, producer, compression), base)
    }

    /// One record without a key at `base` (what a topic got before it became compacted).
    fn keyless_batch(base: i64) -> (Bytes, BatchHeader) {
        at_offset(
            records_batch(&[(None, Some("v"))], 1000, None, Compression::None),
            base,
        )
    }

    fn at_offset(batch: Bytes, base: i64) -> (Bytes, BatchHeader) {
        let mut buf = BytesMut::from(&batch[..]);
        set_base_offset(&mut buf, base);
        set_partition_leader_epoch(&mut buf, 3);
        let h = BatchHeader::parse(&buf).unwrap();
        (buf.freeze(), h)
    }

    /// Filters one batch; returns what was written.
    fn run(
        b: &[u8],
        h: &BatchHeader,
        ctx: &FilterContext<'_>,
    ) -> (Filtered, Vec<u8>, Vec<BatchHeader>) {
        let (mut out, mut hs) = (Vec::new(), Vec::new());
        let f = filter_batch(b, h, ctx, &mut out, &mut hs).unwrap();
        assert_eq!(f.written, !hs.is_empty());
        (f, out, hs)
    }

    /// `(offset, key, value, timestamp)` of every record in `bytes`.
    fn decode(bytes: &[u8]) -> Vec<(i64, String, Option<String>, i64)> {
        let mut buf = Bytes::copy_from_slice(bytes);
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        set.records
            .into_iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    r.timestamp,
                )
            })
            .collect()
    }

    fn map_of(entries: &[(&str, i64)], latest: i64) -> OffsetMap {
        let mut map = OffsetMap::new(1 << 16, 0.9);
        for (k, o) in entries {
            map.put(k.as_bytes(), *o);
        }
        map.update_latest_offset(latest);
        map
    }

    fn ctx<'a>(map: &'a OffsetMap, producers: &'a HashMap<i64, i64>) -> FilterContext<'a> {
        FilterContext {
            map,
            now_ms: 50_000,
            delete_retention_ms: 1_000,
            active_producers: producers,
        }
    }

    #[test]
    fn superseded_records_go_and_the_batch_keeps_its_offsets_and_producer() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let (b, h) = stored_batch(
                10,
                &[
                    ("a", Some("1")),
                    ("b", Some("2")),
                    ("a", Some("3")),
                    ("c", Some("4")),
                ],
                codec,
                Some((7, 2, 100)),
            );
            let map = map_of(&[("a", 12), ("b", 20), ("c", 13)], 20);
            let producers = HashMap::new();
            let (f, out, hs) = run(&b, &h, &ctx(&map, &producers));
            assert_eq!(
                (f.records_read, f.records_kept, f.verbatim),
                (4, 2, false),
                "{codec:?}"
            );
            let n = hs[0];
            assert_eq!(
                (
                    n.base_offset,
                    n.last_offset_delta,
                    n.producer_id,
                    n.producer_epoch,
                    n.base_sequence,
                    n.partition_leader_epoch
                ),
                (10, 3, 7, 2, 100, 3),
                "{codec:?}"
            );
            assert_eq!(n.compression(), codec);
            assert_eq!(n.records_count, 2);
            assert_eq!(n.total_size(), out.len());
            batch::verify_crc(&out, &n).unwrap();
            assert_eq!(BatchHeader::parse(&out).unwrap(), n);
            assert_eq!(
                decode(&out),
                vec![
                    (12, "a".into(), Some("3".into()), 1002),
                    (13, "c".into(), Some("4".into()), 1003)
                ]
            );
            assert_eq!(n.max_timestamp, 1003);
        }
    }

    #[test]
    fn a_batch_that_loses_nothing_is_copied_verbatim() {
        let (b, h) = stored_batch(
            0,
            &[("a", Some("1")), ("b", Some("2"))],
            Compression::Lz4,
            None,
        );
        let map = map_of(&[("a", 0), ("b", 1)], 1);
        let producers = HashMap::new();
        let (f, out, _) = run(&b, &h, &ctx(&map, &producers));
        assert!(f.verbatim);
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn records_beyond_the_map_stay_even_without_a_key() {
        // The map ended at offset 5 (it filled up): offset 10 was never looked at.
        let (b, h) = keyless_batch(10);
        let map = map_of(&[("a", 3)], 5);
        let producers = HashMap::new();
        let (f, out, _) = run(&b, &h, &ctx(&map, &producers));
        assert!(f.verbatim);
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn a_kept_tombstone_gets_a_delete_horizon_and_keeps_its_timestamp() {
        let (b, h) = stored_batch(
            0,
            &[("a", Some("1")), ("a", None), ("b", Some("x"))],
            Compression::Gzip,
            None,
        );
        let map = map_of(&[("a", 1), ("b", 2)], 2);
        let producers = HashMap::new();
        let (f, out, hs) = run(&b, &h, &ctx(&map, &producers));
        let n = hs[0];
        assert_eq!(n.delete_horizon_ms(), Some(51_000));
        assert_eq!(f.tombstone_horizon, Some(51_000));
        assert_eq!(
            decode(&out),
            vec![
                (1, "a".into(), None, 1001),
                (2, "b".into(), Some("x".into()), 1002)
            ]
        );
        let bytes = Bytes::copy_from_slice(&out);
        assert_eq!(
            offsets_and_timestamps(&bytes, &n),
            vec![(1, 1001), (2, 1002)]
        );
        assert_eq!(n.max_timestamp, 1002);

        // Before the horizon a later clean keeps the tombstone as it is ...
        let mut later = ctx(&map, &producers);
        later.now_ms = 50_999;
        let (f2, _, _) = run(&out, &n, &later);
        assert!(f2.verbatim);
        assert_eq!(f2.tombstone_horizon, Some(51_000));
        // ... and from the horizon on it drops it.
        later.now_ms = 51_000;
        let (_, out3, hs3) = run(&out, &n, &later);
        assert_eq!(decode(&out3), vec![(2, "b".into(), Some("x".into()), 1002)]);
        assert_eq!(
            hs3[0].delete_horizon_ms(),
            Some(51_000),
            "the horizon stays with the batch"
        );
    }

    #[test]
    fn an_emptied_batch_goes_unless_it_ends_an_active_producer() {
        let (b, h) = stored_batch(
            4,
            &[("a", Some("1")), ("a", Some("2"))],
            Compression::Snappy,
            Some((9, 0, 0)),
        );
        let map = map_of(&[("a", 99)], 99);
        let none = HashMap::new();
        let (_, out, hs) = run(&b, &h, &ctx(&map, &none));
        assert!(out.is_empty() && hs.is_empty());

        let active = HashMap::from([(9i64, 5i64)]);
        let (_, out, hs) = run(&b, &h, &ctx(&map, &active));
        let e = hs[0];
        assert_eq!((e.base_offset, e.last_offset(), e.records_count), (4, 5, 0));
        assert_eq!(
            (e.producer_id, e.producer_epoch, e.base_sequence),
            (9, 0, 0)
        );
        assert_eq!(e.compression(), Compression::None);
        assert_eq!(e.total_size(), BatchHeader::SIZE);
        batch::verify_crc(&out, &e).unwrap();

        let mut out = Vec::new();
        let e = write_empty_header(&mut out, &h);
        assert_eq!(e, BatchHeader::parse(&out).unwrap());
        assert_eq!((e.records_count, e.last_offset()), (0, 5));
    }

    #[test]
    fn keyless_records_go() {
        let (b, h) = keyless_batch(0);
        let map = map_of(&[], 10);
        let producers = HashMap::new();
        let (f, out, _) = run(&b, &h, &ctx(&map, &producers));
        assert_eq!((f.records_read, f.records_kept), (1, 0));
        assert!(out.is_empty());
    }

    #[test]
    fn a_corrupt_batch_is_refused_not_blessed_with_a_new_crc() {
        let (b, h) = stored_batch(0, &[("a", Some("1"))], Compression::None, None);
        let mut bad = b.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let map = map_of(&[], 0);
        let producers = HashMap::new();
        let err = filter_batch(
            &bad,
            &h,
            &ctx(&map, &producers),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, BatchError::CorruptMessage(_)), "{err}");
    }

    fn offsets_and_timestamps(batch: &Bytes, header: &BatchHeader) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        visit_record_offsets_and_timestamps(batch, header, |o, t| {
            out.push((o, t));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        out
    }
}
