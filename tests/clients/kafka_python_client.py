"""kafka-python against a weir broker.

usage: kafka_python_client.py MODE BOOTSTRAP [ARGS]   (modes as in confluent_kafka_client.py)

Producers keep kafka-python 3's defaults: idempotence is on (it is silently switched off
where a test asks for acks other than all).
  idempotent BOOTSTRAP             a default producer's records are stored exactly once, in order
  idempotent-faults BOOTSTRAP ACKFILE EVENTS  100 000 records from a default producer (request
                                   timeout 3 s), paced, logging acks and timed-out requests
  verify-idempotent BOOTSTRAP ACKFILE  each of them stored exactly once, in order per partition
  transactional BOOTSTRAP          a transactional producer fails at once with a fatal error
  log-dirs BOOTSTRAP               AlterReplicaLogDirs: a replica pinned to its own dir is a
                                   no-op; an unknown dir and an absent replica get Kafka's errors
"""

import os
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions,
                         NewTopic)
from kafka.errors import InvalidTopicError, TopicAlreadyExistsError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (PARTITIONS, RECORDS, UNACKNOWLEDGED, Expected, append_acks, check_partitions, deadline,  # noqa: E402
                    explicit_partition, key_of, ok, read_acks, timeout_logger, usage, value_of,
                    verify_exactly_once, verify_survivors)

FAST_RECONNECT = {"reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 500}


def create_topic(bootstrap, topic, partitions, config=None):
    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        a.create_topics([NewTopic(topic, partitions, 1, topic_configs=config or {})])
    except TopicAlreadyExistsError:
        pass
    finally:
        a.close()


def consume(bootstrap, topic, partitions, expected_total, timeout=90):
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out = {}
    n = 0
    alive = deadline(timeout)
    while n < expected_total and alive():
        for tp, records in c.poll(timeout_ms=500, max_records=50000).items():
            for r in records:
                out.setdefault(tp.partition, []).append((r.offset, r.key, r.value, r))
                n += 1
    c.close()
    assert n == expected_total, "read %d of %d records of %s" % (n, expected_total, topic)
    return out


def strip(consumed):
    return {p: [(o, k, v) for o, k, v, _ in recs] for p, recs in consumed.items()}


def producer(bootstrap, **config):
    return KafkaProducer(bootstrap_servers=bootstrap, **config)


def roundtrip(bootstrap, acks):
    topic = "kp-roundtrip-acks%s" % acks.replace("-", "m")
    create_topic(bootstrap, topic, PARTITIONS)
    p = producer(bootstrap, acks=int(acks) if acks != "all" else "all", linger_ms=50,
                 batch_size=512 * 1024, max_request_size=8 << 20)
    start = time.time()
    futures = []
    for i in range(RECORDS):
        futures.append(p.send(topic, key=key_of(i), value=value_of(i), partition=explicit_partition(i)))
    p.flush(120)
    expected = Expected()
    produced_to = []
    for i, f in enumerate(futures):
        md = f.get(0)
        produced_to.append((i, md.partition))
    # Acknowledgement order per partition is send order per partition.
    for i, (_, partition) in enumerate(produced_to):
        md = futures[i].get(0)
        expected.add(partition, md.offset, key_of(i), value_of(i))
    check_partitions(expected, produced_to)
    p.close()
    ok("produced %d records with acks=%s in %.1fs" % (RECORDS, acks, time.time() - start))
    start = time.time()
    consumed = consume(bootstrap, topic, PARTITIONS, RECORDS)
    expected.verify(strip(consumed), check_offsets=acks != "0")
    ok("read them back in %.1fs, same bytes and order per partition" % (time.time() - start))


def features(bootstrap):
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        topic = "kp-codec-" + codec
        create_topic(bootstrap, topic, 1)
        p = producer(bootstrap, compression_type=codec, linger_ms=20)
        for i in range(5000):
            p.send(topic, key=key_of(i), value=value_of(i) * 3)
        p.flush(60)
        p.close()
        got = consume(bootstrap, topic, 1, 5000)[0]
        assert [(k, v) for _, k, v, _ in got] == [(key_of(i), value_of(i) * 3) for i in range(5000)]
        ok("compression " + codec)

    topic = "kp-features"
    create_topic(bootstrap, topic, 1)
    p = producer(bootstrap)
    p.send(topic, key=b"h", value=b"with headers", headers=[("h1", b"v1"), ("h2", b""), ("h1", b"again")])
    # kafka-python refuses a record with neither key nor value: one of each.
    p.send(topic, key=None, value=b"no key")
    p.send(topic, key=b"tombstone", value=None)
    p.flush(30)
    got = consume(bootstrap, topic, 1, 3)[0]
    assert list(got[0][3].headers) == [("h1", b"v1"), ("h2", b""), ("h1", b"again")], got[0][3].headers
    ok("headers")
    assert (got[1][1], got[1][2]) == (None, b"no key") and (got[2][1], got[2][2]) == (b"tombstone", None)
    ok("null key and value")

    topic = "kp-times"
    create_topic(bootstrap, topic, 1)
    base = 1_600_000_000_000
    for i in range(10):
        p.send(topic, key=b"t%d" % i, value=b"timed", timestamp_ms=base + i * 1000)
    p.flush(30)
    p.close()
    got = consume(bootstrap, topic, 1, 10)[0]
    for i in range(10):
        r = got[i][3]
        assert (r.timestamp_type, r.timestamp) == (0, base + i * 1000), (r.timestamp_type, r.timestamp)
    ok("CreateTime timestamps")
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    tp = TopicPartition(topic, 0)
    assert c.offsets_for_times({tp: base + 3500})[tp].offset == 4
    assert c.offsets_for_times({tp: base + 1_000_000})[tp] is None
    assert c.beginning_offsets([tp])[tp] == 0 and c.end_offsets([tp])[tp] == 10
    c.close()
    ok("ListOffsets by time, earliest and latest")


def admin_mode(bootstrap):
    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic = "kp-admin-%d" % os.getpid()
    a.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "3600000"})])
    ok("create topic")
    try:
        a.create_topics([NewTopic(topic, 3, 1)])
        raise AssertionError("a duplicate topic was created")
    except TopicAlreadyExistsError:
        pass
    try:
        a.create_topics([NewTopic("kp-bad name", 1, 1)])
        raise AssertionError("an invalid topic name was accepted")
    except InvalidTopicError:
        pass
    ok("create errors")
    described = a.describe_topics([topic])
    assert len(described[0]["partitions"]) == 3, described
    ok("describe topics")
    result = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    text = repr(result)
    assert "retention.ms" in text and "3600000" in text, text[:500]
    ok("describe configs")
    result = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                             configs={"retention.ms": "7200000"})])
    assert result["topic"][topic] == "OK", result
    text = repr(a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]))
    assert "7200000" in text, text[:500]
    result = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                             configs={"retention.ms": "soon"})])
    assert "InvalidConfig" in result["topic"][topic], result
    ok("alter configs")
    a.create_partitions({topic: NewPartitions(5)})
    assert len(a.describe_topics([topic])[0]["partitions"]) == 5
    ok("create partitions")
    p = producer(bootstrap)
    for i in range(10):
        p.send(topic, value=b"r%d" % i, partition=0)
    p.flush(30)
    p.close()
    tp = TopicPartition(topic, 0)
    a.delete_records({tp: 6})
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    assert c.beginning_offsets([tp])[tp] == 6 and c.end_offsets([tp])[tp] == 10
    c.close()
    ok("delete records")
    dirs = repr(a.describe_log_dirs())
    assert topic in dirs, dirs[:800]
    ok("describe log dirs")
    cluster = a.describe_cluster()
    assert cluster["controller_id"] == 1 and cluster["cluster_id"], cluster
    ok("describe cluster")
    a.delete_topics([topic])
    assert topic not in a.list_topics()
    ok("delete topics")
    a.close()


def log_dirs(bootstrap):
    from kafka.errors import LogDirNotFoundError, NoError, ReplicaNotAvailableError
    from kafka.structs import TopicPartitionReplica
    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic = "kp-log-dirs-%d" % os.getpid()
    a.create_topics([NewTopic(topic, 1, 1)])
    described = a.describe_log_dirs()
    broker = described[0]["broker"]
    held = [d["log_dir"] for d in described[0]["log_dirs"] if topic in repr(d)]
    assert len(held) == 1, described
    here = TopicPartitionReplica(topic, 0, broker)
    assert a.alter_replica_log_dirs({here: held[0]}) == {here: NoError}
    ok("alter replica log dirs: own dir")
    result = a.alter_replica_log_dirs({here: "/nonexistent/weir-log-dir"})
    assert result == {here: LogDirNotFoundError}, result
    absent = TopicPartitionReplica(topic, 5, broker)
    result = a.alter_replica_log_dirs({absent: held[0]})
    assert result == {absent: ReplicaNotAvailableError}, result
    ok("alter replica log dirs: errors")
    a.close()


def survive(bootstrap, ack_file, stop_file):
    topic = "survive"
    create_topic(bootstrap, topic, PARTITIONS)
    p = producer(bootstrap, acks=1, linger_ms=5, retries=1_000_000, delivery_timeout_ms=120000,
                 request_timeout_ms=5000, **FAST_RECONNECT)
    pending = []

    def delivered(key, md):  # add_callback passes its extra arguments first
        pending.append("%d %d %s\n" % (md.partition, md.offset, key))

    i = 0
    while not os.path.exists(stop_file):
        for _ in range(200):
            key = "s%d" % i
            p.send(topic, key=key.encode(), value=value_of(i)).add_callback(delivered, key)
            i += 1
        time.sleep(0.01)
        if pending:
            batch = pending[:]
            del pending[:len(batch)]
            append_acks(ack_file, batch)
    p.flush(60)
    append_acks(ack_file, pending)
    p.close()
    ok("survive produced %d" % i)


def verify_survive(bootstrap, ack_file):
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    tps = [TopicPartition("survive", p) for p in range(PARTITIONS)]
    total = sum(c.end_offsets(tps).values())
    c.close()
    verify_survivors(read_acks(ack_file), strip(consume(bootstrap, "survive", PARTITIONS, total)))


def idempotent(bootstrap):
    topic = "kp-idempotent"
    total = 20_000
    create_topic(bootstrap, topic, PARTITIONS)
    p = KafkaProducer(bootstrap_servers=bootstrap)
    futures = [p.send(topic, key=b"s%d" % i, value=value_of(i)) for i in range(total)]
    p.flush(60)
    acks = []
    for i, f in enumerate(futures):
        md = f.get(0)
        acks.append((md.partition, md.offset, b"s%d" % i))
    manager = p._transaction_manager
    assert manager is not None and manager.producer_id_and_epoch.producer_id >= 0, \
        "the default producer is not idempotent"
    ok("producer id %d" % manager.producer_id_and_epoch.producer_id)
    p.close()
    verify_exactly_once(acks, strip(consume(bootstrap, topic, PARTITIONS, total)), total)


FAULTS_TOPIC = "kp-idempotent-faults"


def idempotent_faults(bootstrap, ack_file, event_file):
    """kafka-python's defaults (idempotence on, acks=all, unlimited retries) with the request
    timeout lowered to 3 s, paced (at most 2000 records unacknowledged) so broker pauses and a
    kill land mid-run. A timed-out request
    closes the connection; the batch is retried with its sequence."""
    create_topic(bootstrap, FAULTS_TOPIC, PARTITIONS)
    timeout_logger("kafka.net.connection", event_file, "Request timed out")
    p = producer(bootstrap, request_timeout_ms=3000, **FAST_RECONNECT)
    pending = []
    errors = []
    acked = [0]

    def delivered(key, md):  # add_callback passes its extra arguments first
        pending.append("%d %d %s\n" % (md.partition, md.offset, key))
        acked[0] += 1

    for i in range(RECORDS):
        key = "s%d" % i
        f = p.send(FAULTS_TOPIC, key=key.encode(), value=value_of(i))
        f.add_callback(delivered, key)
        f.add_errback(errors.append)
        while i % 200 == 199 or i + 1 - acked[0] >= UNACKNOWLEDGED:
            time.sleep(0.01)
            if pending:
                batch = pending[:]
                del pending[:len(batch)]
                append_acks(ack_file, batch)
            if i + 1 - acked[0] < UNACKNOWLEDGED:
                break
    p.flush(300)
    p.close()
    append_acks(ack_file, pending)
    assert not errors, "%d delivery errors, first %r" % (len(errors), errors[0])
    ok("idempotent produced %d" % RECORDS)


def verify_idempotent(bootstrap, ack_file):
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    tps = [TopicPartition(FAULTS_TOPIC, p) for p in range(PARTITIONS)]
    total = sum(c.end_offsets(tps).values())
    c.close()
    consumed = strip(consume(bootstrap, FAULTS_TOPIC, PARTITIONS, total))
    verify_exactly_once(read_acks(ack_file), consumed, RECORDS)


def transactional(bootstrap):
    from kafka.errors import TransactionalIdAuthorizationFailedError
    start = time.time()
    p = producer(bootstrap, transactional_id="kp-tx", max_block_ms=30000)
    try:
        p.init_transactions()
        raise AssertionError("init_transactions succeeded")
    except TransactionalIdAuthorizationFailedError:
        pass
    finally:
        p.close(timeout=5)
    took = time.time() - start
    assert took < 10, "refused only after %.1fs" % took
    ok("kafka-python transactional producer refused in %.1fs" % took)


def main():
    if len(sys.argv) < 3:
        usage()
    mode, bootstrap, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    {
        "roundtrip": lambda: roundtrip(bootstrap, rest[0]),
        "features": lambda: features(bootstrap),
        "admin": lambda: admin_mode(bootstrap),
        "survive": lambda: survive(bootstrap, rest[0], rest[1]),
        "verify-survive": lambda: verify_survive(bootstrap, rest[0]),
        "idempotent": lambda: idempotent(bootstrap),
        "idempotent-faults": lambda: idempotent_faults(bootstrap, rest[0], rest[1]),
        "verify-idempotent": lambda: verify_idempotent(bootstrap, rest[0]),
        "transactional": lambda: transactional(bootstrap),
        "log-dirs": lambda: log_dirs(bootstrap),
    }[mode]()
    ok("ALL")


if __name__ == "__main__":
    main()
