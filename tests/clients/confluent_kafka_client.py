"""confluent-kafka (librdkafka) against a weir broker.

usage: confluent_kafka_client.py MODE BOOTSTRAP [ARGS]
  roundtrip BOOTSTRAP ACKS         100 000 records (keyed, unkeyed, explicit partition), read back
  features BOOTSTRAP               compression codecs, headers, null key/value, timestamps, ListOffsets
  admin BOOTSTRAP                  create/describe/alter/delete topics and configs, describe cluster
  survive BOOTSTRAP ACKFILE STOP   produce with acks=1 until STOP exists, logging acknowledgements
  verify-survive BOOTSTRAP ACKFILE every logged acknowledgement is still there
  idempotent BOOTSTRAP ACKFILE [EVENTS]  100 000 records with enable.idempotence=true, logging
                                   acks (and a `timeout` line in EVENTS per timed-out request)
  verify-idempotent BOOTSTRAP ACKFILE  each of them stored exactly once, in order per partition
  failover BOOTSTRAP ACKFILE       the idempotent run with 200 000 records into 6 partitions of
                                   the broker's default replication (a leader is crashed meanwhile)
  verify-failover BOOTSTRAP ACKFILE    each of them stored exactly once, in order per partition
  transactional BOOTSTRAP          a transactional producer fails at once with a fatal error
  cluster-admin BOOTSTRAP create|delete  a 6-partition RF=3 topic: create, alter a config, add
                                   partitions, elect preferred leaders / delete it
"""

import os
import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, KafkaException,
                             Producer, TopicCollection, TopicPartition)
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (PARTITIONS, RECORDS, UNACKNOWLEDGED, Expected, append_acks, check_partitions, deadline,  # noqa: E402
                    explicit_partition, key_of, ok, read_acks, timeout_logger, usage, value_of,
                    verify_exactly_once, verify_survivors)

FAST_RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, topic, partitions, config=None, replication_factor=1):
    """`replication_factor=-1` takes the broker's default."""
    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                  config=config or {})])
    try:
        futures[topic].result(30)
    except KafkaException as e:
        if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise


def consume(bootstrap, topic, partitions, expected_total, timeout=60):
    """Every record of `topic` from the beginning: partition -> [(offset, key, value, msg)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-verify",
                  "enable.auto.commit": False, "fetch.queue.backoff.ms": 10})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = {}
    n = 0
    alive = deadline(timeout)
    while n < expected_total and alive():
        for m in c.consume(10000, 0.5):
            assert m.error() is None, m.error()
            out.setdefault(m.partition(), []).append((m.offset(), m.key(), m.value(), m))
            n += 1
    c.close()
    assert n == expected_total, "read %d of %d records of %s" % (n, expected_total, topic)
    return out


def strip(consumed):
    return {p: [(o, k, v) for o, k, v, _ in recs] for p, recs in consumed.items()}


def roundtrip(bootstrap, acks):
    topic = "ck-roundtrip-acks%s" % acks.replace("-", "m")
    create_topic(bootstrap, topic, PARTITIONS)
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                  "enable.idempotence": False, "queue.buffering.max.messages": 200000})
    expected = Expected()
    produced_to = []
    errors = []

    def delivered(err, msg, i):
        if err is not None:
            errors.append(err)
            return
        expected.add(msg.partition(), msg.offset(), msg.key(), msg.value())
        produced_to.append((i, msg.partition()))

    start = time.time()
    for i in range(RECORDS):
        kwargs = {}
        if explicit_partition(i) is not None:
            kwargs["partition"] = explicit_partition(i)
        while True:
            try:
                p.produce(topic, key=key_of(i), value=value_of(i),
                          on_delivery=lambda err, msg, i=i: delivered(err, msg, i), **kwargs)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0, "records still queued"
    assert not errors, errors[:3]
    assert expected.total() == RECORDS
    check_partitions(expected, produced_to)
    ok("produced %d records with acks=%s in %.1fs" % (RECORDS, acks, time.time() - start))
    start = time.time()
    consumed = consume(bootstrap, topic, PARTITIONS, RECORDS)
    expected.verify(strip(consumed), check_offsets=acks != "0")
    ok("read them back in %.1fs, same bytes and order per partition" % (time.time() - start))


def features(bootstrap):
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        topic = "ck-codec-" + codec
        create_topic(bootstrap, topic, 1)
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20})
        for i in range(5000):
            p.produce(topic, key=key_of(i), value=value_of(i) * 3)
        assert p.flush(30) == 0
        got = consume(bootstrap, topic, 1, 5000)[0]
        assert [(k, v) for _, k, v, _ in got] == [(key_of(i), value_of(i) * 3) for i in range(5000)]
        ok("compression " + codec)

    topic = "ck-features"
    create_topic(bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, key=b"h", value=b"with headers", headers=[("h1", b"v1"), ("h2", None), ("h1", b"again")])
    p.produce(topic, key=None, value=None)
    assert p.flush(30) == 0
    got = consume(bootstrap, topic, 1, 2)[0]
    assert got[0][3].headers() == [("h1", b"v1"), ("h2", None), ("h1", b"again")], got[0][3].headers()
    ok("headers")
    assert got[1][1] is None and got[1][2] is None
    ok("null key and value")

    topic = "ck-times"
    create_topic(bootstrap, topic, 1)
    base = 1_600_000_000_000
    for i in range(10):
        p.produce(topic, key=b"t%d" % i, value=b"timed", timestamp=base + i * 1000)
    assert p.flush(30) == 0
    got = consume(bootstrap, topic, 1, 10)[0]
    for i in range(10):
        assert got[i][3].timestamp() == (TIMESTAMP_CREATE_TIME, base + i * 1000), got[i][3].timestamp()
    ok("CreateTime timestamps")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-verify"})
    found = c.offsets_for_times([TopicPartition(topic, 0, base + 3500)], 10)
    assert found[0].offset == 4, found
    exact = c.offsets_for_times([TopicPartition(topic, 0, base + 7000)], 10)
    assert exact[0].offset == 7, exact
    late = c.offsets_for_times([TopicPartition(topic, 0, base + 1_000_000)], 10)
    assert late[0].offset == -1, late
    assert c.get_watermark_offsets(TopicPartition(topic, 0), 10) == (0, 10)
    c.close()
    ok("ListOffsets by time, earliest and latest")


def admin_mode(bootstrap):
    a = admin(bootstrap)
    topic = "ck-admin-%d" % os.getpid()
    a.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "3600000"})])[topic].result(30)
    ok("create topic")
    try:
        a.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
        raise AssertionError("a duplicate topic was created")
    except KafkaException as e:
        assert e.args[0].name() == "TOPIC_ALREADY_EXISTS", e
    try:
        a.create_topics([NewTopic("ck-bad name", 1, 1)])["ck-bad name"].result(30)
        raise AssertionError("an invalid topic name was accepted")
    except KafkaException as e:
        assert e.args[0].name() == "TOPIC_EXCEPTION", e
    ok("create errors")
    md = a.list_topics(timeout=10)
    assert len(md.topics[topic].partitions) == 3
    assert md.controller_id == 1, md.controller_id
    ok("describe topics")
    resource = ConfigResource("topic", topic)
    configs = a.describe_configs([resource])[resource].result(30)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    ok("describe configs")
    change = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("segment.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([change])[change].result(30)
    configs = a.describe_configs([resource])[resource].result(30)
    assert configs["segment.ms"].value == "7200000" and configs["retention.ms"].value == "3600000"
    bad = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    try:
        a.incremental_alter_configs([bad])[bad].result(30)
        raise AssertionError("an invalid config was accepted")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_CONFIG", e
    ok("alter configs")
    broker = ConfigResource("broker", "1")
    configs = a.describe_configs([broker])[broker].result(30)
    assert configs["num.partitions"].value is not None
    ok("describe broker configs")
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(30)
    assert len(a.list_topics(timeout=10).topics[topic].partitions) == 5
    ok("create partitions")
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        p.produce(topic, value=b"r%d" % i, partition=0)
    assert p.flush(30) == 0
    deleted = a.delete_records([TopicPartition(topic, 0, 6)])
    low = list(deleted.values())[0].result(30).low_watermark
    assert low == 6, low
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-verify"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), 10) == (6, 10)
    c.close()
    ok("delete records")
    cluster = a.describe_cluster().result(30)
    assert cluster.controller.id == 1 and len(cluster.nodes) >= 1 and cluster.cluster_id
    ok("describe cluster")
    # Without an authorizer Kafka reports every operation a resource type supports.
    described = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True)
    ops = sorted(op.name for op in described[topic].result(30).authorized_operations)
    assert ops == sorted(["READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE",
                          "DESCRIBE_CONFIGS", "ALTER_CONFIGS"]), ops
    cluster = a.describe_cluster(include_authorized_operations=True).result(30)
    ops = sorted(op.name for op in cluster.authorized_operations)
    assert ops == sorted(["CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
                          "IDEMPOTENT_WRITE", "ALTER", "DESCRIBE"]), ops
    ok("authorized operations")
    a.delete_topics([topic])[topic].result(30)
    assert topic not in a.list_topics(timeout=10).topics
    ok("delete topics")


def survive(bootstrap, ack_file, stop_file):
    topic = "survive"
    create_topic(bootstrap, topic, PARTITIONS)
    p = Producer(dict(FAST_RECONNECT, **{"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5,
                                         "message.timeout.ms": 120000}))
    pending = []

    def delivered(err, msg):
        if err is None:
            pending.append("%d %d %s\n" % (msg.partition(), msg.offset(), msg.key().decode()))

    i = 0
    while not os.path.exists(stop_file):
        for _ in range(200):
            try:
                p.produce(topic, key=b"s%d" % i, value=value_of(i), on_delivery=delivered)
                i += 1
            except BufferError:
                break
        p.poll(0.01)
        if pending:
            append_acks(ack_file, pending)
            pending.clear()
    p.flush(60)
    append_acks(ack_file, pending)
    ok("survive produced %d" % i)


def verify_survive(bootstrap, ack_file):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-verify"})
    total = sum(c.get_watermark_offsets(TopicPartition("survive", p), 10)[1] for p in range(PARTITIONS))
    c.close()
    consumed = strip(consume(bootstrap, "survive", PARTITIONS, total))
    verify_survivors(read_acks(ack_file), consumed)


def produce_paced(p, topic, prefix, ack_file, on_error, more, window, burst, flush_s):
    """Produces keys `<prefix><i>` (values `value_of(i)`) while `more(i)`, at most `burst`
    per 10 ms poll and `window` unacknowledged, logging every acknowledgement to `ack_file`
    (`partition offset key`); `on_error(err)` for each record that failed for good. Returns
    (records sent, records acknowledged) once everything is flushed."""
    pending = []
    acked = [0]

    def delivered(err, msg):
        if err is None:
            pending.append("%d %d %s\n" % (msg.partition(), msg.offset(), msg.key().decode()))
            acked[0] += 1
        else:
            on_error(err)

    i = 0
    while more(i):
        for _ in range(burst):
            if not more(i) or i - acked[0] >= window:
                break
            try:
                p.produce(topic, key=prefix + b"%d" % i, value=value_of(i), on_delivery=delivered)
                i += 1
            except BufferError:
                break
        p.poll(0.01)
        if pending:
            append_acks(ack_file, pending)
            pending.clear()
    assert p.flush(flush_s) == 0, "records still in flight"
    append_acks(ack_file, pending)
    return i, acked[0]


IDEMPOTENT_TOPIC = "idempotent"
# The failover run: 200 000 records into 6 partitions with the cluster's default replication
# (3, min.insync.replicas 2 under `weir cluster`), acks=all (librdkafka's default).
FAILOVER_TOPIC = "ck-failover"
FAILOVER_RECORDS = 200_000
FAILOVER_PARTITIONS = 6


def idempotent(bootstrap, ack_file, event_file=None, topic=IDEMPOTENT_TOPIC, records=RECORDS,
               partitions=PARTITIONS, replication_factor=1):
    """Paced (at most 2000 records unacknowledged, about 200 sent per 10 ms) so a broker kill
    or pause lands mid-run. Produce requests time out after 3 s (`socket.timeout.ms`,
    librdkafka's produce request timeout): librdkafka then drops the connection and retries
    the batches with the same sequences."""
    create_topic(bootstrap, topic, partitions, replication_factor=replication_factor)
    config = dict(FAST_RECONNECT, **{"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                     "linger.ms": 5, "message.timeout.ms": 180000,
                                     "socket.timeout.ms": 3000})
    if event_file:
        # librdkafka logs `REQTMOUT ... Timed out ProduceRequest in flight` at warning level.
        config["logger"] = timeout_logger("rdkafka", event_file, "Timed out ProduceRequest")
    p = Producer(config)
    errors = []
    i, _ = produce_paced(p, topic, b"s", ack_file, errors.append,
                         more=lambda i: i < records, window=UNACKNOWLEDGED, burst=200, flush_s=180)
    assert not errors, "%d delivery errors, first %s" % (len(errors), errors[0])
    ok("idempotent produced %d" % i)


def verify_idempotent(bootstrap, ack_file, topic=IDEMPOTENT_TOPIC, records=RECORDS,
                      partitions=PARTITIONS):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-verify"})
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(partitions))
    c.close()
    consumed = strip(consume(bootstrap, topic, partitions, total))
    verify_exactly_once(read_acks(ack_file), consumed, records)


def failover(bootstrap, ack_file):
    idempotent(bootstrap, ack_file, topic=FAILOVER_TOPIC, records=FAILOVER_RECORDS,
               partitions=FAILOVER_PARTITIONS, replication_factor=-1)


def verify_failover(bootstrap, ack_file):
    verify_idempotent(bootstrap, ack_file, topic=FAILOVER_TOPIC, records=FAILOVER_RECORDS,
                      partitions=FAILOVER_PARTITIONS)


def transactional(bootstrap):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "ck-tx"})
    start = time.time()
    try:
        p.init_transactions(30)
        raise AssertionError("init_transactions succeeded")
    except KafkaException as e:
        err = e.args[0]
        assert err.fatal() and err.name() == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", err
        assert "does not support transactions" in err.str(), err.str()
    took = time.time() - start
    assert took < 10, "refused only after %.1fs" % took
    ok("confluent-kafka transactional producer refused in %.1fs: fatal, %s" % (took, err.str()))


CLUSTER_TOPIC = "cp-admin"


def cluster_admin(bootstrap, phase):
    """[control-plane] through whichever broker `bootstrap` names (a non-controller in the
    test): `create` makes a 6-partition RF=3 topic, alters a config, adds partitions and asks
    for preferred leaders; `delete` deletes it."""
    a = admin(bootstrap)
    if phase == "delete":
        a.delete_topics([CLUSTER_TOPIC])[CLUSTER_TOPIC].result(30)
        alive = deadline(30)
        while CLUSTER_TOPIC in a.list_topics(timeout=10).topics and alive():
            time.sleep(0.1)
        assert CLUSTER_TOPIC not in a.list_topics(timeout=10).topics, "still listed"
        ok("delete topic through a non-controller")
        return
    a.create_topics([NewTopic(CLUSTER_TOPIC, 6, 3)])[CLUSTER_TOPIC].result(30)
    md = a.list_topics(CLUSTER_TOPIC, timeout=10).topics[CLUSTER_TOPIC]
    assert len(md.partitions) == 6, md.partitions
    for p in md.partitions.values():
        assert len(p.replicas) == 3 and sorted(p.isrs) == sorted(p.replicas), p
        assert p.leader == p.replicas[0], "partition %d: leader %d, replicas %s" % (
            p.id, p.leader, p.replicas)
    leaders = sorted(p.leader for p in md.partitions.values())
    assert leaders == [1, 1, 2, 2, 3, 3], "leaders spread over the brokers: %s" % leaders
    ok("create a 6-partition RF=3 topic through a non-controller")
    resource = ConfigResource("topic", CLUSTER_TOPIC, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([resource])[resource].result(30)
    described = a.describe_configs([ConfigResource("topic", CLUSTER_TOPIC)])
    configs = list(described.values())[0].result(30)
    assert configs["retention.ms"].value == "3600000", configs["retention.ms"]
    ok("alter a topic config through a non-controller")
    a.create_partitions([NewPartitions(CLUSTER_TOPIC, 8)])[CLUSTER_TOPIC].result(30)
    alive = deadline(30)
    while len(a.list_topics(CLUSTER_TOPIC, timeout=10).topics[CLUSTER_TOPIC].partitions) < 8 \
            and alive():
        time.sleep(0.1)
    assert len(a.list_topics(CLUSTER_TOPIC, timeout=10).topics[CLUSTER_TOPIC].partitions) == 8
    ok("add partitions through a non-controller")
    from confluent_kafka import ElectionType
    result = a.elect_leaders(ElectionType.PREFERRED,
                             [TopicPartition(CLUSTER_TOPIC, 0)]).result(30)
    error = result[TopicPartition(CLUSTER_TOPIC, 0)]
    # The preferred replica already leads: Kafka answers ELECTION_NOT_NEEDED.
    assert error is not None and error.name() == "ELECTION_NOT_NEEDED", error
    ok("preferred leader election")


def broker_configs(bootstrap):
    """Dynamic broker configs (KIP-226) of the broker `bootstrap` names: set, described with
    their source and synonyms, taking effect on topics without overrides, refused as Kafka
    refuses them, deleted back to the static value."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    md = a.list_topics(timeout=10)
    broker = str(min(md.brokers))
    topic = "ck-dynamic-%d" % int(time.time() * 1000)
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

    def describe(kind, name):
        resource = ConfigResource(kind, name)
        return a.describe_configs([resource])[resource].result(30)

    def alter(*ops):
        resource = ConfigResource("broker", broker, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=op) for (k, op, v) in ops])
        a.incremental_alter_configs([resource])[resource].result(30)

    before = describe("broker", broker)["log.retention.ms"]
    assert before.is_read_only is False, before
    topic_retention = describe("topic", topic)["retention.ms"].value
    alter(("log.retention.ms", AlterConfigOpType.SET, "7200000"),
          ("log.flush.interval.messages", AlterConfigOpType.SET, "1234"),
          ("log.cleanup.policy", AlterConfigOpType.APPEND, "compact"))
    configs = describe("broker", broker)
    entry = configs["log.flush.interval.messages"]
    assert entry.value == "1234", entry
    assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value, entry.source
    assert [s.source for s in entry.synonyms.values()][-1] == ConfigSource.DEFAULT_CONFIG.value
    assert configs["log.cleanup.policy"].value == "delete,compact", configs["log.cleanup.policy"]
    assert configs["broker.id"].is_read_only, configs["broker.id"]
    ok("per-broker config")
    topic_configs = describe("topic", topic)
    assert topic_configs["retention.ms"].value == "7200000", topic_configs["retention.ms"]
    assert topic_configs["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert topic_configs["flush.messages"].value == "1234"
    ok("topic defaults follow")
    for key, value in [("broker.id", "77"), ("ssl.keystore.location", "/nowhere")]:
        try:
            alter((key, AlterConfigOpType.SET, value))
            raise AssertionError(f"{key} was altered at run time")
        except KafkaException as e:
            assert e.args[0].name() == "INVALID_REQUEST", e
    assert describe("broker", broker)["broker.id"].value == broker
    ok("static keys refused")
    alter(("log.retention.ms", AlterConfigOpType.DELETE, ""))
    assert describe("topic", topic)["retention.ms"].value == topic_retention
    assert describe("broker", broker)["log.retention.ms"].source == before.source
    ok("delete restores the static value")


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
        "idempotent": lambda: idempotent(bootstrap, *rest[:2]),
        "verify-idempotent": lambda: verify_idempotent(bootstrap, rest[0]),
        "failover": lambda: failover(bootstrap, rest[0]),
        "verify-failover": lambda: verify_failover(bootstrap, rest[0]),
        "transactional": lambda: transactional(bootstrap),
        "cluster-admin": lambda: cluster_admin(bootstrap, rest[0]),
        "broker-configs": lambda: broker_configs(bootstrap),
    }[mode]()
    ok("ALL")


if __name__ == "__main__":
    main()
