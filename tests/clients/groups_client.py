"""Consumer groups against weir (tests/it/kafka_clients/groups.rs).

Modes (each takes the bootstrap address): share [STRATEGY], idle, kill_member, kafka_python, aiokafka,
commit, committed, admin, static, retention, retention_gone, failover_commit, failover_resume
COMMITTED. `member` is the child process kill_member starts. Prints one `OK <what>` line per check and exits non-zero on the first failure.
"""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

SESSION = 6000
DEADLINE = 40


def ok(what):
    print("OK", what, flush=True)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions)]).values():
        f.result(20)


def produce(bootstrap, topic, start, n, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, value=b"%d" % i, partition=i % partitions)
    assert p.flush(20) == 0, "produce did not finish"


def consumer(bootstrap, group, name, extra=None):
    """A group member committing by hand, with a 6 s session; `extra` overrides."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    }
    config.update(extra or {})
    return Consumer(config)


def subscribed_member(bootstrap, group, name, topic, n):
    """A member of `group` subscribed to `topic` that has consumed `n` records."""
    c = consumer(bootstrap, group, name)
    c.subscribe([topic])
    got = 0
    deadline = time.time() + DEADLINE
    while got < n and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got += 1
    assert got == n, "%s consumed %d of %d" % (name, got, n)
    return c


def share(bootstrap, strategy="range"):
    """Seed 17.3/17.7 with one assignor. With cooperative-sticky, members keep consuming the
    partitions they keep during a rebalance, so a commit can land after the group moved to
    the next generation (ILLEGAL_GENERATION) or while it awaits the leader's assignment
    (REBALANCE_IN_PROGRESS), as with Kafka's classic coordinator; only then may a record be
    consumed again by its partition's next owner."""
    topic, group = "grp-share-" + strategy, "share-group-" + strategy
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 0, 200, 4)
    seen = {}
    uncommitted = set()
    config = {"partition.assignment.strategy": strategy}
    consumers = {n: consumer(bootstrap, group, n, config) for n in ("c1", "c2")}
    for c in consumers.values():
        c.subscribe([topic])

    def poll_round():
        for name, c in consumers.items():
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            v = int(m.value())
            assert v not in seen or seen[v] in uncommitted, (
                "record %d consumed twice (by %s and %s)" % (v, seen[v], name))
            seen[v] = name
            try:
                c.commit(message=m, asynchronous=False)
            except KafkaException as e:
                if strategy != "cooperative-sticky" or e.args[0].code() not in (
                        KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION):
                    raise
                uncommitted.add(name)

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
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(20)
    assert described.partition_assignor == strategy, described.partition_assignor
    ok("the group runs the %s protocol the members asked for" % strategy)
    deadline = time.time() + DEADLINE
    while len(seen) < 200 and time.time() < deadline:
        poll_round()
    assert len(seen) == 200, "consumed %d of 200" % len(seen)
    ok("first 200 records consumed once")
    consumers["c3"] = consumer(bootstrap, group, "c3", config)
    consumers["c3"].subscribe([topic])
    produce(bootstrap, topic, 200, 200, 4)
    a = wait_balanced(3, (1, 2))
    ok("rebalance after a third member: every partition owned once %s" % a)
    deadline = time.time() + DEADLINE
    while len(seen) < 400 and time.time() < deadline:
        poll_round()
    assert len(seen) == 400, "consumed %d of 400" % len(seen)
    ok("no record consumed twice across the rebalance (%s)" % strategy)
    for c in consumers.values():
        c.close()


def idle(bootstrap):
    """Seed 17.4: three members, two partitions: one member gets nothing and stays idle."""
    topic, group = "grp-idle", "idle-group"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 0, 100, 2)
    consumers = {n: consumer(bootstrap, group, n) for n in ("c1", "c2")}
    # KIP-394: librdkafka joins with JoinGroup v5 and an empty member id; the coordinator
    # answers MEMBER_ID_REQUIRED with an id, and the member joins again with it.
    joins = []

    class JoinLog(logging.Handler):
        def emit(self, record):
            if "JoinGroup response" in record.getMessage():
                joins.append(record.getMessage())

    log = logging.getLogger("idle-c3")
    log.addHandler(JoinLog())
    log.setLevel(logging.DEBUG)
    consumers["c3"] = consumer(bootstrap, group, "c3", {"debug": "cgrp", "logger": log})
    for c in consumers.values():
        c.subscribe([topic])
    seen = {}

    def poll_round():
        for name, c in consumers.items():
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            seen.setdefault(int(m.value()), []).append(name)
            c.commit(message=m, asynchronous=False)

    def sizes():
        return sorted(len(c.assignment()) for c in consumers.values())

    deadline = time.time() + DEADLINE
    while time.time() < deadline and (sizes() != [0, 1, 1] or len(seen) < 100):
        poll_round()
    assert sizes() == [0, 1, 1], "assignment sizes %s" % sizes()
    assert len(seen) == 100, "consumed %d of 100" % len(seen)
    assert joins and "needs a valid member ID" in joins[0], "first JoinGroup: %s" % joins[:1]
    assert any("(no error)" in j for j in joins[1:]), joins
    ok("KIP-394: c3 got MEMBER_ID_REQUIRED, then joined with the id it was given")
    idle_name = [n for n, c in consumers.items() if not c.assignment()][0]
    a = AdminClient({"bootstrap.servers": bootstrap})
    first = a.describe_consumer_groups([group])[group].result(20)
    ok("three members on two partitions: %s idle" % idle_name)
    # The idle member keeps its membership without rebalancing anyone: two session timeouts
    # later the group still has its three members and the same members own the partitions.
    owners = {n: sorted(tp.partition for tp in c.assignment()) for n, c in consumers.items()}
    produce(bootstrap, topic, 100, 100, 2)
    until = time.time() + 2 * SESSION / 1000
    while time.time() < until:
        poll_round()
    later = a.describe_consumer_groups([group])[group].result(20)
    assert str(later.state).endswith("STABLE"), "state %s" % later.state
    assert len(later.members) == 3, "members %s" % later.members
    assert sorted(m.member_id for m in later.members) == sorted(m.member_id for m in first.members)
    assert owners == {n: sorted(tp.partition for tp in c.assignment()) for n, c in consumers.items()}
    # (It may have owned a partition in an earlier generation, before all three had joined.)
    assert not any(idle_name in seen[v] for v in range(100, 200)), "the idle member consumed"
    assert len(seen) == 200 and all(len(v) == 1 for v in seen.values()), "duplicates or gaps"
    ok("the idle member stays idle and the group stays stable")
    for c in consumers.values():
        c.close()


def static(bootstrap):
    """KIP-345: a static member (group.instance.id) that restarts within its session gets its
    partitions back with no rebalance of the others; one that stays away loses them when its
    session expires."""
    topic, group = "grp-static", "static-group"
    create_topic(bootstrap, topic, 4)
    events = []

    def make(name):
        c = consumer(bootstrap, group, name, {"group.instance.id": name})
        c.subscribe([topic], on_assign=lambda _c, ps: events.append((name, "assign", sorted(p.partition for p in ps))),
                    on_revoke=lambda _c, ps: events.append((name, "revoke", sorted(p.partition for p in ps))))
        return c

    members = {"s1": make("s1"), "s2": make("s2")}

    def owned(c):
        return sorted(tp.partition for tp in c.assignment())

    def wait(check, what):
        deadline = time.time() + DEADLINE
        while time.time() < deadline:
            for c in members.values():
                c.poll(0.05)
            if check():
                return
        raise AssertionError("%s: %s" % (what, events))

    wait(lambda: [len(owned(c)) for c in members.values()] == [2, 2], "no 2+2 split")
    before = {n: owned(c) for n, c in members.items()}
    a = AdminClient({"bootstrap.servers": bootstrap})
    described = a.describe_consumer_groups([group])[group].result(20)
    assert sorted(m.group_instance_id for m in described.members) == ["s1", "s2"], described.members
    ok("static members s1 and s2 own %s" % before)
    # A static member's close does not leave the group (librdkafka sends no LeaveGroup).
    members.pop("s1").close()
    events.clear()
    members["s1"] = make("s1")
    wait(lambda: owned(members["s1"]) == before["s1"], "s1 did not get its partitions back")
    # s2 saw no rebalance: no revoke or assign while s1 was away and back.
    until = time.time() + 2
    while time.time() < until:
        for c in members.values():
            c.poll(0.05)
    assert not [e for e in events if e[0] == "s2"], "s2 rebalanced: %s" % events
    assert owned(members["s2"]) == before["s2"]
    ok("s1 restarted within its session and got %s back without a rebalance" % before["s1"])
    # Away for longer than its session: its partitions go to s2.
    members.pop("s1").close()
    gone = time.time()
    wait(lambda: owned(members["s2"]) == [0, 1, 2, 3], "s1's partitions did not move")
    took = time.time() - gone
    assert took >= SESSION / 1000 - 1, "moved after %.1fs, before the session ran out" % took
    ok("s1 stayed away: its partitions moved to s2 after %.1fs" % took)
    members["s2"].close()


RETENTION_TOPIC = "grp-retention"
RETENTION_GROUPS = ("retention-members", "retention-simple")


def retention(bootstrap):
    """Run against a broker with offsets.retention.minutes=1: the offsets of a consumer group
    expire a minute after it became Empty, those of a group that only ever committed (no
    members) a minute after the commit; then both groups are gone."""
    create_topic(bootstrap, RETENTION_TOPIC, 2)
    produce(bootstrap, RETENTION_TOPIC, 0, 10, 2)
    members, simple = RETENTION_GROUPS
    c = subscribed_member(bootstrap, members, "retention-member", RETENTION_TOPIC, 10)
    c.commit(asynchronous=False)
    c.close()
    s = consumer(bootstrap, simple, "retention-simple")
    s.commit(offsets=[TopicPartition(RETENTION_TOPIC, p, 3) for p in range(2)], asynchronous=False)
    s.close()
    emptied = time.time()
    a = AdminClient({"bootstrap.servers": bootstrap})
    for group, want in ((members, [(0, 5), (1, 5)]), (simple, [(0, 3), (1, 3)])):
        got = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(20)
        assert sorted((tp.partition, tp.offset) for tp in got.topic_partitions) == want, got
    ok("committed offsets of an emptied group and of a group without members")
    deadline = time.time() + 60 + 2 * DEADLINE
    while time.time() < deadline:
        listed = [g.group_id for g in a.list_consumer_groups().result(20).valid]
        if not any(g in listed for g in RETENTION_GROUPS):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("groups still listed: %s" % listed)
    took = time.time() - emptied
    assert took >= 59, "offsets expired after %.0fs, before offsets.retention.minutes" % took
    ok("both groups expired after %.0fs (offsets.retention.minutes=1)" % took)
    retention_gone(bootstrap)


def retention_gone(bootstrap):
    """The expired groups have no committed offsets and are not listed (also after a restart:
    the expiry wrote tombstones)."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    listed = [g.group_id for g in a.list_consumer_groups().result(20).valid]
    assert not any(g in listed for g in RETENTION_GROUPS), "listed: %s" % listed
    for group in RETENTION_GROUPS:
        c = consumer(bootstrap, group, "retention-check")
        got = c.committed([TopicPartition(RETENTION_TOPIC, p) for p in range(2)], timeout=20)
        assert all(tp.offset < 0 for tp in got), "%s still has offsets %s" % (group, got)
        c.close()
    ok("expired groups have no offsets and are not listed")


def member(bootstrap, group, topic, log_path, name):
    """kill_member's child: consumes, commits each record after processing it, and logs
    `assign T parts`, `got P O` and `committed P O` lines (line-buffered)."""
    c = consumer(bootstrap, group, name)
    log = open(log_path, "a", buffering=1)

    def on_assign(_c, parts):
        log.write("assign %.3f %s\n" % (time.time(), ",".join(str(p.partition) for p in parts)))

    c.subscribe([topic], on_assign=on_assign)
    while True:
        m = c.poll(0.1)
        if m is None or m.error():
            continue
        log.write("got %d %d\n" % (m.partition(), m.offset()))
        time.sleep(0.002)
        c.commit(message=m, asynchronous=False)
        log.write("committed %d %d\n" % (m.partition(), m.offset() + 1))


def read_member_log(path):
    """(assignments [(time, [partitions])], got [(p, o, assignments before it)],
    committed {p: offset})."""
    assigns, got, committed = [], [], {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) >= 2 and w[0] == "assign":
                parts = [int(p) for p in w[2].split(",")] if len(w) > 2 else []
                assigns.append((float(w[1]), parts))
            elif len(w) == 3 and w[0] == "got":
                got.append((int(w[1]), int(w[2]), len(assigns)))
            elif len(w) == 3 and w[0] == "committed":
                committed[int(w[1])] = int(w[2])
    return assigns, got, committed


def kill_member(bootstrap):
    """SIGKILL one member process: its partitions move to the survivor once its session
    times out, and the survivor resumes them from the last committed offsets (no gap)."""
    topic, group, half = "grp-kill", "kill-group", 500
    per_partition = 2 * half
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 0, 4 * half, 4)
    tmp = tempfile.mkdtemp()
    logs = {n: os.path.join(tmp, n) for n in ("a", "b")}
    procs = {n: subprocess.Popen([sys.executable, os.path.abspath(__file__), "member", bootstrap,
                                  group, topic, logs[n], n]) for n in logs}
    try:
        def state(n):
            return read_member_log(logs[n]) if os.path.exists(logs[n]) else ([], [], {})

        deadline = time.time() + DEADLINE
        while time.time() < deadline:
            a, b = state("a"), state("b")
            # Each member owns two partitions and has committed on both.
            if all(m[0] and len(m[0][-1][1]) == 2 and all(p in m[2] for p in m[0][-1][1])
                   for m in (a, b)):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("members did not split the partitions: %s %s" % (state("a")[0], state("b")[0]))
        ok("two member processes own two partitions each")
        procs["a"].send_signal(signal.SIGKILL)
        procs["a"].wait()
        killed_at = time.time()
        a_assigns, a_got, a_committed = state("a")
        a_parts = a_assigns[-1][1]
        deadline = killed_at + SESSION / 1000 + DEADLINE
        moved_at = None
        while time.time() < deadline:
            b_assigns = state("b")[0]
            if sorted(b_assigns[-1][1]) == [0, 1, 2, 3]:
                moved_at = b_assigns[-1][0]
                break
            time.sleep(0.05)
        assert moved_at is not None, "the killed member's partitions never moved: %s" % state("b")[0]
        took = moved_at - killed_at
        # The session runs from the last heartbeat (at most heartbeat.interval.ms before the
        # kill); the move then takes a rejoin and a sync: allow for a loaded machine.
        assert SESSION / 1000 - 1 <= took < SESSION / 1000 + 5, (
            "partitions moved after %.1fs (session %d ms)" % (took, SESSION))
        ok("partitions %s moved to the survivor %.1fs after the kill (session.timeout.ms=%d)"
           % (a_parts, took, SESSION))
        produce(bootstrap, topic, 4 * half, 4 * half, 4)
        deadline = time.time() + DEADLINE
        while time.time() < deadline:
            b_committed = state("b")[2]
            if all(b_committed.get(p) == per_partition for p in range(4)):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the survivor did not finish: committed %s" % state("b")[2])
        b_assigns, b_got, _ = state("b")
        a_max = {p: max(o for q, o, _ in a_got if q == p) for p in a_parts}
        for p in a_parts:
            # The survivor's first record of a taken-over partition after the move (it may
            # have owned the partition before, in a generation without the other member).
            first = [o for q, o, n in b_got if q == p and n == len(b_assigns)][0]
            # The kill may land between a commit and its log line: one past the logged commit.
            assert a_committed[p] <= first <= a_committed[p] + 1, (
                "partition %d: resumed at %d, last commit %d" % (p, first, a_committed[p]))
            assert first <= a_max[p] + 1, "partition %d: gap %d..%d" % (p, a_max[p] + 1, first)
        for p in range(4):
            offsets = set(o for q, o, _ in a_got + b_got if q == p)
            assert offsets == set(range(per_partition)), (
                "partition %d: missing %s" % (p, sorted(set(range(per_partition)) - offsets)[:5]))
        dups = len(a_got) + len(b_got) - 4 * per_partition
        ok("the survivor resumed from the last commits: no gap, %d redelivered" % dups)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


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


FAILOVER_TOPIC, FAILOVER_GROUP, FAILOVER_RECORDS = "grp-failover", "failover-group", 300


def failover_commit(bootstrap):
    """Before the coordinator crashes: consume half the records, commit, leave the group."""
    create_topic(bootstrap, FAILOVER_TOPIC, 3)
    produce(bootstrap, FAILOVER_TOPIC, 0, FAILOVER_RECORDS, 3)
    c = subscribed_member(bootstrap, FAILOVER_GROUP, "before", FAILOVER_TOPIC, FAILOVER_RECORDS // 2)
    c.commit(asynchronous=False)
    got = c.committed([TopicPartition(FAILOVER_TOPIC, p) for p in range(3)], timeout=20)
    c.close()
    print("COMMITTED", ",".join(str(tp.offset) for tp in got), flush=True)
    ok("committed half the records")


def failover_resume(bootstrap, expected):
    """After the crash: a new member finds the group's new coordinator, sees the commits made
    before, and reads exactly the records after them (no gap, nothing twice)."""
    expected = [int(o) for o in expected.split(",")]
    c = consumer(bootstrap, FAILOVER_GROUP, "after")
    got = c.committed([TopicPartition(FAILOVER_TOPIC, p) for p in range(3)], timeout=30)
    assert [tp.offset for tp in got] == expected, "committed after the crash: %s" % got
    ok("the commits survived the coordinator's crash")
    c.subscribe([FAILOVER_TOPIC])
    ends = [c.get_watermark_offsets(TopicPartition(FAILOVER_TOPIC, p), 20)[1] for p in range(3)]
    want = sum(e - max(o, 0) for e, o in zip(ends, expected))
    read = {}
    deadline = time.time() + DEADLINE
    while sum(len(v) for v in read.values()) < want and time.time() < deadline:
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            read.setdefault(m.partition(), []).append(m.offset())
    c.close()
    for p in range(3):
        offsets = read.get(p, [])
        assert offsets == list(range(max(expected[p], 0), ends[p])), (
            "partition %d: read %s..%s, expected %d..%d" % (
                p, offsets[:1], offsets[-1:], expected[p], ends[p]))
    ok("resumed from the commits: %d records, no gap, none twice" % want)


def admin(bootstrap):
    topic, group = "grp-admin", "admin-group"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 0, 20, 2)
    c = subscribed_member(bootstrap, group, "admin-member", topic, 20)
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
    if mode == "member":
        member(bootstrap, *sys.argv[3:7])
    if mode == "share":
        share(bootstrap, *sys.argv[3:4])
        ok("ALL")
        sys.exit(0)
    if mode == "failover_resume":
        failover_resume(bootstrap, sys.argv[3])
        ok("ALL")
        sys.exit(0)
    {
        "idle": idle,
        "static": static,
        "retention": retention,
        "retention_gone": retention_gone,
        "kill_member": kill_member,
        "kafka_python": kafka_python_group,
        "aiokafka": aiokafka_group,
        "commit": commit,
        "committed": committed,
        "admin": admin,
        "failover_commit": failover_commit,
    }[mode](bootstrap)
    ok("ALL")
