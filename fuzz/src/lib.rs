//! What the fuzz targets and the seed generator (`examples/seed_corpora.rs`) share: inputs
//! built the way real clients build them.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A record batch exactly as a producer encodes it: `n` keyed records.
pub fn client_batch(n: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where offset - sequence changes; a producer
            // without idempotence sends -1, 0, 1, ... so it stays one batch.
            sequence: (i as i32).wrapping_sub(1),
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut out, &records, &options).expect("encode a record batch");
    out.freeze()
}

/// Rewrites the CRC-32C of every whole batch in `log` (a run of batches, as in a `.log` file or
/// a produce request). A random mutation almost always breaks the CRC, and everything behind
/// the CRC check (decompression, the record walk, recovery's offset checks) would otherwise be
/// reached only by the unmutated seeds; the targets fix CRCs for half their inputs.
pub fn fix_crcs(log: &mut [u8]) {
    const CRC: usize = 17;
    const ATTRIBUTES: usize = 21;
    const HEADER: usize = 61;
    let mut position = 0;
    while log.len() - position >= HEADER {
        let length = i32::from_be_bytes(log[position + 8..position + 12].try_into().unwrap());
        let Some(size) = usize::try_from(length).ok().map(|l| l + 12) else {
            return;
        };
        if size < HEADER || size > log.len() - position {
            return;
        }
        let batch = &mut log[position..position + size];
        let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        position += size;
    }
}
