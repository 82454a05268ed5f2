"""confluent-kafka (librdkafka) against `weir broker` processes (tests/it/multinode.rs).

usage: multinode_client.py MODE BOOTSTRAP [ARGS]
  produce BOOTSTRAP TOPIC ACKFILE STOPFILE ERRFILE
      creates TOPIC (3 partitions, replication factor 3, min.insync.replicas=2), then produces
      with acks=all, paced, until STOPFILE exists. Every acknowledgement goes to ACKFILE
      (`partition offset key`); every error the client could not retry away goes to ERRFILE
      (`delivery NAME ...` for a record that failed for good, `fatal NAME ...` for a fatal
      client error). librdkafka retries retriable errors (NOT_LEADER_OR_FOLLOWER,
      NOT_ENOUGH_REPLICAS, a lost connection) by itself, so an empty ERRFILE means the client
      saw none but retriable ones.
  verify BOOTSTRAP TOPIC ACKFILE
      every acknowledged record is still at its offset with its key
"""

import os
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PARTITIONS, append_acks, ok, read_acks, usage, value_of, verify_survivors  # noqa: E402
from confluent_kafka_client import FAST_RECONNECT, consume, strip  # noqa: E402

# At most this many records wait for their acknowledgement, so a fault lands mid-run.
WINDOW = 1000


def create(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3,
                   config={"min.insync.replicas": "2"})
    try:
        admin.create_topics([new])[topic].result(30)
    except KafkaException as e:
        if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise


def produce(bootstrap, topic, ack_file, stop_file, err_file):
    create(bootstrap, topic)

    def record_error(line):
        with open(err_file, "a") as f:
            f.write(line + "\n")

    def on_error(err):
        # Transport errors (a broker went away) are logged by librdkafka and retried.
        if err.fatal():
            record_error("fatal %s %s" % (err.name(), err.str()))

    p = Producer(dict(FAST_RECONNECT, **{
        "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
        "enable.idempotence": False, "message.timeout.ms": 120000,
        "error_cb": on_error}))
    pending = []
    acked = [0]

    def delivered(err, msg):
        if err is None:
            pending.append("%d %d %s\n" % (msg.partition(), msg.offset(), msg.key().decode()))
            acked[0] += 1
        else:
            record_error("delivery %s retriable=%s %s" % (err.name(), err.retriable(), err.str()))

    i = 0
    while not os.path.exists(stop_file):
        for _ in range(20):
            if i - acked[0] >= WINDOW:
                break
            try:
                p.produce(topic, key=b"m%d" % i, value=value_of(i), on_delivery=delivered)
                i += 1
            except BufferError:
                break
        p.poll(0.01)
        if pending:
            append_acks(ack_file, pending)
            pending.clear()
    assert p.flush(120) == 0, "records still in flight"
    append_acks(ack_file, pending)
    ok("produced %d records, %d acknowledged" % (i, acked[0]))


def verify(bootstrap, topic, ack_file):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-verify"})
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in range(PARTITIONS))
    c.close()
    consumed = strip(consume(bootstrap, topic, PARTITIONS, total))
    verify_survivors(read_acks(ack_file), consumed)


def main():
    if len(sys.argv) < 3:
        usage()
    mode, bootstrap, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    started = time.time()
    {
        "produce": lambda: produce(bootstrap, *rest[:4]),
        "verify": lambda: verify(bootstrap, *rest[:2]),
    }[mode]()
    ok("ALL in %.1fs" % (time.time() - started))


if __name__ == "__main__":
    main()
