"""Consumer groups against weir (tests/it/kafka_clients/groups.rs).

Modes (each takes the bootstrap address): share, kafka_python, aiokafka, commit, committed,
admin. Prints one `OK <what>` line per check and exits non-zero on the first failure.
"""

import asyncio
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic

SESSION = 6000
DEADLINE = 40


def ok(what):
    print("OK", what, flush=True)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(20)


def produce(bootstrap, topic, start, n, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert p.flush(20) == 0, "produce did not finish"


def consumer(bootstrap, group, name):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    })


def share(bootstrap):
    topic, group = "grp-share", "share-group"
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 0, 200, 4)
    seen = {}
    consumers = {"c1": consumer(bootstrap, group, "c1"), "c2": consumer(bootstrap, group, "c2")}
    for c in consumers.values():
        c.subscribe([topic])

    def poll_round():
        for name, c in consumers.items():
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            v = int(m.value())
            assert v not in seen, "record %d consumed twice (by %s and %s)" % (v, seen[v], name)
            seen[v] = name
            c.commit(message=m, asynchronous=False)

    def assignments():
        return {n: sorted(tp.partition for tp in c.assignment()) for n, c in consumers.items()}

    def wait_balanced(total, per):
        deadline = time.time() + DEADLINE
        while time.time() < deadline:
            poll_round()
            a = assignments()
            owned = [p for ps in a.values() for p in ps]
            if len(a) == total and all(len(ps) in per for ps in a.values()) \
                    and sorted(owned) == [0, 1, 2, 3]:
                return a
        raise AssertionError("no balanced assignment: %s" % assignments())

    a = wait_balanced(2, (2,))
    ok("two members own two partitions each %s" % a)
    deadline = time.time() + DEADLINE
    while len(seen) < 200 and time.time() < deadline:
        poll_round()
    assert len(seen) == 200, "consumed %d of 200" % len(seen)
    ok("first 200 records consumed once")
    consumers["c3"] = consumer(bootstrap, group, "c3")
    consumers["c3"].subscribe([topic])
    produce(bootstrap, topic, 200, 200, 4)
    a = wait_balanced(3, (1, 2))
    ok("rebalance after a third member: every partition owned once %s" % a)
    deadline = time.time() + DEADLINE
    while len(seen) < 400 and time.time() < deadline:
        poll_round()
    assert len(seen) == 400, "consumed %d of 400" % len(seen)
    ok("no record consumed twice across the rebalance")
    for c in consumers.values():
        c.close()


def kafka_python_group(bootstrap):
    from kafka import KafkaConsumer, TopicPartition as KTP
    topic = "grp-kp"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 0, 50, 2)

    def make():
        return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="kp-group",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=SESSION, heartbeat_interval_ms=500,
                             consumer_timeout_ms=3000)

    c = make()
    got = []
    deadline = time.time() + DEADLINE
    while len(got) < 50 and time.time() < deadline:
        for tp, msgs in c.poll(timeout_ms=500).items():
            got.extend(int(m.value) for m in msgs)
    assert sorted(got) == list(range(50)), "kafka-python consumed %d" % len(got)
    c.commit()
    committed = sum(c.committed(KTP(topic, p)) or 0 for p in range(2))
    assert committed == 50, "committed %d" % committed
    c.close()
    ok("kafka-python group consumer consumed and committed")
    produce(bootstrap, topic, 50, 10, 2)
    c = make()
    got = []
    deadline = time.time() + DEADLINE
    while len(got) < 10 and time.time() < deadline:
        for tp, msgs in c.poll(timeout_ms=500).items():
            got.extend(int(m.value) for m in msgs)
    assert sorted(got) == list(range(50, 60)), "resumed with %s" % sorted(got)[:5]
    c.close()
    ok("kafka-python group consumer resumed from the committed offsets")


def aiokafka_group(bootstrap):
    from aiokafka import AIOKafkaConsumer, TopicPartition as ATP
    topic = "grp-aio"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 0, 50, 2)

    async def run(expected):
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="aio-group",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=SESSION, heartbeat_interval_ms=500)
        await c.start()
        try:
            got = []
            deadline = time.time() + DEADLINE
            while len(got) < len(expected) and time.time() < deadline:
                batches = await c.getmany(timeout_ms=500)
                for msgs in batches.values():
                    got.extend(int(m.value) for m in msgs)
            assert sorted(got) == expected, "aiokafka consumed %s" % sorted(got)[:5]
            await c.commit()
            total = 0
            for p in range(2):
                total += (await c.committed(ATP(topic, p))) or 0
            return total
        finally:
            await c.stop()

    assert asyncio.run(run(list(range(50)))) == 50
    ok("aiokafka group consumer consumed and committed")
    produce(bootstrap, topic, 50, 10, 2)
    assert asyncio.run(run(list(range(50, 60)))) == 60
    ok("aiokafka group consumer resumed from the committed offsets")


def commit(bootstrap):
    create_topic(bootstrap, "grp-durable", 3)
    c = consumer(bootstrap, "durable-group", "committer")
    offsets = [TopicPartition("grp-durable", p, 10 + p) for p in range(3)]
    c.commit(offsets=offsets, asynchronous=False)
    ok("committed %s" % [(tp.partition, tp.offset) for tp in offsets])
    c.close()


def committed(bootstrap):
    c = consumer(bootstrap, "durable-group", "reader")
    got = c.committed([TopicPartition("grp-durable", p) for p in range(3)], timeout=20)
    assert [tp.offset for tp in got] == [10, 11, 12], "committed after restart: %s" % got
    ok("committed offsets after restart")
    c.close()


def admin(bootstrap):
    topic, group = "grp-admin", "admin-group"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 0, 20, 2)
    c = consumer(bootstrap, group, "admin-member")
    c.subscribe([topic])
    n = 0
    deadline = time.time() + DEADLINE
    while n < 20 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            n += 1
    c.commit(asynchronous=False)
    a = AdminClient({"bootstrap.servers": bootstrap})
    listed = a.list_consumer_groups().result(20)
    ids = [g.group_id for g in listed.valid]
    assert group in ids, "list_consumer_groups: %s" % ids
    ok("list consumer groups")
    described = a.describe_consumer_groups([group])[group].result(20)
    assert len(described.members) == 1, "members %s" % described.members
    assert str(described.state).endswith("STABLE"), "state %s" % described.state
    ok("describe consumer groups")
    c.close()
    req = [ConsumerGroupTopicPartitions(group)]
    got = a.list_consumer_group_offsets(req)[group].result(20)
    offs = sorted((tp.partition, tp.offset) for tp in got.topic_partitions)
    assert offs == [(0, 10), (1, 10)], "listed offsets %s" % offs
    ok("list consumer group offsets")
    alter = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3)])]
    a.alter_consumer_group_offsets(alter)[group].result(20)
    got = a.list_consumer_group_offsets(req)[group].result(20)
    offs = sorted((tp.partition, tp.offset) for tp in got.topic_partitions)
    assert offs == [(0, 3), (1, 10)], "after alter %s" % offs
    ok("alter consumer group offsets")
    a.delete_consumer_groups([group])[group].result(20)
    ids = [g.group_id for g in a.list_consumer_groups().result(20).valid]
    assert group not in ids, "still listed after delete: %s" % ids
    ok("delete consumer groups")


if __name__ == "__main__":
    mode, bootstrap = sys.argv[1], sys.argv[2]
    {
        "share": share,
        "kafka_python": kafka_python_group,
        "aiokafka": aiokafka_group,
        "commit": commit,
        "committed": committed,
        "admin": admin,
    }[mode](bootstrap)
    ok("ALL")
