//! A produce request's records through the client-validation path (Kafka's LogValidator),
//! compressed batches included. The first byte picks the topic settings and whether the
//! harness fixes the CRC first (so mutations get past the CRC check); the rest is the
//! partition's `records` field as a client sends it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::storage::batch::{self, BatchHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, records)) = data.split_first() else {
        return;
    };
    let require_keys = settings & 1 == 1;
    // max.message.bytes: the default, or small enough that the fuzzer reaches the limit.
    let max_batch_bytes = if settings & 2 == 2 { 1_048_588 } else { 256 };
    let mut records = records.to_vec();
    if settings & 4 == 4 {
        weir_fuzz::fix_crcs(&mut records);
    }
    let Ok(valid) = batch::validate_client_batches(
        Bytes::copy_from_slice(&records),
        max_batch_bytes,
        require_keys,
    ) else {
        return;
    };
    // What passed validation is what the log stores: one batch whose stored header parses,
    // carries a correct CRC and spans exactly the bytes.
    assert_eq!(valid.headers.len(), 1);
    let stored = valid.stored_bytes();
    assert_eq!(stored.len(), records.len());
    let header = BatchHeader::parse(&stored).expect("stored header parses");
    assert_eq!(header, valid.headers[0]);
    batch::verify_crc(&stored, &header).expect("stored CRC is valid");
    assert_eq!(header.total_size(), stored.len());
    assert_eq!(valid.record_count, header.records_count as usize);
    assert!(
        valid.record_count <= stored.len(),
        "more records than bytes"
    );
});
