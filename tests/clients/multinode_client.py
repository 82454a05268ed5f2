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
from common import PARTITIONS, ok, read_acks, usage, verify_survivors  # noqa: E402
from confluent_kafka_client import FAST_RECONNECT, consume, produce_paced, strip  # noqa: E402

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
    sent, acked = produce_paced(
        p, topic, b"m", ack_file,
        lambda err: record_error("delivery %s retriable=%s %s" % (err.name(), err.retriable(), err.str())),
        more=lambda i: not os.path.exists(stop_file), window=WINDOW, burst=20, flush_s=120)
    ok("produced %d records, %d acknowledged" % (sent, acked))


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
