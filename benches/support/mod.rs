//! What the benches share: client record batches built as a producer builds them.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Record `i` of a client batch: no producer id, timestamps a millisecond apart.
pub fn record(i: i64, key: Option<Bytes>, value_len: usize) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i,
        // The encoder starts a new batch where offset - sequence changes.
        sequence: i as i32 - 1,
        timestamp: 1_700_000_000_000 + i,
        key,
        value: Some(Bytes::from(vec![b'v'; value_len])),
        headers: Default::default(),
    }
}

/// One uncompressed RecordBatch v2 holding `records`.
pub fn encode_batch(records: &[Record]) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a batch");
    buf.freeze()
}
