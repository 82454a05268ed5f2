//! Fetch's limits at the wire: whole stored batches only, at least the first batch even when
//! it exceeds both the partition and the response limit (KIP-74), and the response limit
//! shared in request order. The bytes served are the bytes stored.

use bytes::Bytes;
use kafka_protocol::messages::*;

use super::rdkafka_client::create_topic;
use super::versions::{name, Conn};
use super::Weir;

/// One stored-as-sent batch of `records` records with `value_len`-byte values.
fn batch(records: usize, value_len: usize) -> Bytes {
    super::bad_input::batch(records, value_len).freeze()
}

fn produce(c: &mut Conn, partition: i32, records: Bytes) -> i64 {
    let r: ProduceResponse = c.call(
        ApiKey::Produce,
        9,
        &ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name("kip74"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ])]),
    );
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

/// Fetches both partitions from offset 0 with the given limits: each partition's records.
fn fetch(c: &mut Conn, max_bytes: i32, partition_max_bytes: [i32; 2]) -> [Bytes; 2] {
    let r: FetchResponse = c.call(
        ApiKey::Fetch,
        11,
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("kip74"))
                .with_partitions(
                    (0..2)
                        .map(|p| {
                            fetch_request::FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(partition_max_bytes[p as usize])
                        })
                        .collect(),
                )]),
    );
    assert_eq!(r.error_code, 0);
    let parts = &r.responses[0].partitions;
    for p in parts {
        assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
    }
    [0, 1].map(|i| parts[i].records.clone().unwrap_or_default())
}

/// The stored form of a produced batch: the same bytes but for the base offset and the
/// partition leader epoch, which the leader sets outside the CRC.
fn assert_stored(served: &[u8], sent: &Bytes, base_offset: i64) {
    assert_eq!(served.len(), sent.len());
    assert_eq!(&served[..8], &base_offset.to_be_bytes());
    assert_eq!(&served[8..12], &sent[8..12]);
    assert_eq!(&served[16..], &sent[16..]);
}

#[test]
fn fetch_serves_whole_stored_batches_and_at_least_the_first_one() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    create_topic(&b, "kip74", 2);
    let mut c = Conn::new(&b);
    let (big, small, other) = (batch(4, 2_500), batch(2, 10), batch(4, 2_500));
    assert_eq!(produce(&mut c, 0, big.clone()), 0);
    assert_eq!(produce(&mut c, 0, small.clone()), 4);
    assert_eq!(produce(&mut c, 1, other.clone()), 0);

    // Both limits far below the first batch: it comes anyway, whole (KIP-74); the response
    // limit is then spent, so the next partition gets nothing.
    let [p0, p1] = fetch(&mut c, 100, [100, 100]);
    assert_stored(&p0, &big, 0);
    assert!(p1.is_empty(), "{} bytes past the response limit", p1.len());

    // A partition limit that ends inside the second batch: only the first, never a part.
    let [p0, _] = fetch(&mut c, 1 << 20, [big.len() as i32 + 5, 1 << 20]);
    assert_stored(&p0, &big, 0);

    // Room for both batches of partition 0 but not for partition 1's: it gets none of it.
    let [p0, p1] = fetch(
        &mut c,
        (big.len() + small.len() + 10) as i32,
        [1 << 20, 1 << 20],
    );
    assert_eq!(p0.len(), big.len() + small.len());
    assert_stored(&p0[..big.len()], &big, 0);
    assert_stored(&p0[big.len()..], &small, 4);
    assert!(p1.is_empty());

    // Enough for everything.
    let [p0, p1] = fetch(&mut c, 1 << 20, [1 << 20, 1 << 20]);
    assert_eq!(p0.len(), big.len() + small.len());
    assert_stored(&p1, &other, 0);
}
