"""aiokafka against a weir broker.

usage: aiokafka_client.py MODE BOOTSTRAP [ARGS]   (modes as in confluent_kafka_client.py)
  transactional BOOTSTRAP          a transactional producer fails at once with a fatal error
"""

import asyncio
import os
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (PARTITIONS, RECORDS, Expected, append_acks, check_partitions, deadline,  # noqa: E402
                    explicit_partition, key_of, ok, read_acks, usage, value_of, verify_survivors)


async def create_topic(bootstrap, topic, partitions, config=None):
    a = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await a.start()
    try:
        result = await a.create_topics([NewTopic(topic, partitions, 1, topic_configs=config or {})])
        for _, code, *_ in result.topic_errors:
            assert code in (0, TopicAlreadyExistsError.errno), result
    finally:
        await a.close()


async def consume(bootstrap, topic, partitions, expected_total, timeout=90):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         max_partition_fetch_bytes=4 << 20, fetch_max_bytes=16 << 20)
    await c.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    await c.seek_to_beginning(*tps)
    out = {}
    n = 0
    alive = deadline(timeout)
    try:
        while n < expected_total and alive():
            batches = await c.getmany(timeout_ms=500, max_records=50000)
            for tp, records in batches.items():
                for r in records:
                    out.setdefault(tp.partition, []).append((r.offset, r.key, r.value, r))
                    n += 1
    finally:
        await c.stop()
    assert n == expected_total, "read %d of %d records of %s" % (n, expected_total, topic)
    return out


def strip(consumed):
    return {p: [(o, k, v) for o, k, v, _ in recs] for p, recs in consumed.items()}


async def roundtrip(bootstrap, acks):
    topic = "ak-roundtrip-acks%s" % acks.replace("-", "m")
    await create_topic(bootstrap, topic, PARTITIONS)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=int(acks) if acks != "all" else "all",
                         linger_ms=50, max_batch_size=512 * 1024, max_request_size=8 << 20)
    await p.start()
    await p.partitions_for(topic)
    start = time.time()
    futures = []
    chosen = []
    for i in range(RECORDS):
        partition = explicit_partition(i)
        if acks == "0":
            # With acks=0 aiokafka reports no metadata: ask its partitioner up front.
            partition = p._partition(topic, partition, key_of(i), value_of(i), key_of(i), value_of(i))
        chosen.append(partition)
        futures.append(await p.send(topic, key=key_of(i), value=value_of(i), partition=partition))
    results = await asyncio.gather(*futures)
    await p.stop()
    expected = Expected()
    produced_to = []
    for i, md in enumerate(results):
        partition = md.partition if md is not None else chosen[i]
        produced_to.append((i, partition))
        expected.add(partition, md.offset if md is not None else -1, key_of(i), value_of(i))
    check_partitions(expected, produced_to)
    ok("produced %d records with acks=%s in %.1fs" % (RECORDS, acks, time.time() - start))
    start = time.time()
    consumed = await consume(bootstrap, topic, PARTITIONS, RECORDS)
    expected.verify(strip(consumed), check_offsets=acks != "0")
    ok("read them back in %.1fs, same bytes and order per partition" % (time.time() - start))


async def features(bootstrap):
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        topic = "ak-codec-" + codec
        await create_topic(bootstrap, topic, 1)
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=20)
        await p.start()
        futures = [await p.send(topic, key=key_of(i), value=value_of(i) * 3) for i in range(5000)]
        await asyncio.gather(*futures)
        await p.stop()
        got = (await consume(bootstrap, topic, 1, 5000))[0]
        assert [(k, v) for _, k, v, _ in got] == [(key_of(i), value_of(i) * 3) for i in range(5000)]
        ok("compression " + codec)

    topic = "ak-features"
    await create_topic(bootstrap, topic, 1)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    await p.send_and_wait(topic, key=b"h", value=b"with headers",
                          headers=[("h1", b"v1"), ("h2", b""), ("h1", b"again")])
    # aiokafka refuses a record with neither key nor value: one of each.
    await p.send_and_wait(topic, key=None, value=b"no key")
    await p.send_and_wait(topic, key=b"tombstone", value=None)
    got = (await consume(bootstrap, topic, 1, 3))[0]
    assert list(got[0][3].headers) == [("h1", b"v1"), ("h2", b""), ("h1", b"again")], got[0][3].headers
    ok("headers")
    assert (got[1][1], got[1][2]) == (None, b"no key") and (got[2][1], got[2][2]) == (b"tombstone", None)
    ok("null key and value")

    topic = "ak-times"
    await create_topic(bootstrap, topic, 1)
    base = 1_600_000_000_000
    for i in range(10):
        await p.send_and_wait(topic, key=b"t%d" % i, value=b"timed", timestamp_ms=base + i * 1000)
    await p.stop()
    got = (await consume(bootstrap, topic, 1, 10))[0]
    for i in range(10):
        r = got[i][3]
        assert (r.timestamp_type, r.timestamp) == (0, base + i * 1000), (r.timestamp_type, r.timestamp)
    ok("CreateTime timestamps")
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    tp = TopicPartition(topic, 0)
    assert (await c.offsets_for_times({tp: base + 3500}))[tp].offset == 4
    assert (await c.offsets_for_times({tp: base + 1_000_000}))[tp] is None
    assert (await c.beginning_offsets([tp]))[tp] == 0 and (await c.end_offsets([tp]))[tp] == 10
    await c.stop()
    ok("ListOffsets by time, earliest and latest")


async def admin_mode(bootstrap):
    a = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await a.start()
    topic = "ak-admin-%d" % os.getpid()
    result = await a.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "3600000"})])
    assert all(code == 0 for _, code, *_ in result.topic_errors), result
    ok("create topic")
    result = await a.create_topics([NewTopic(topic, 3, 1)])
    assert result.topic_errors[0][1] == TopicAlreadyExistsError.errno, result
    ok("create errors")
    described = await a.describe_topics([topic])
    assert len(described[0]["partitions"]) == 3, described
    ok("describe topics")
    responses = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    text = repr(responses)
    assert "retention.ms" in text and "3600000" in text, text[:500]
    ok("describe configs")
    responses = await a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                      configs={"retention.ms": "7200000"})])
    assert all(r[0] == 0 for resp in responses for r in resp.resources), responses
    text = repr(await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]))
    assert "7200000" in text, text[:500]
    responses = await a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                      configs={"retention.ms": "soon"})])
    assert any(r[0] == 40 for resp in responses for r in resp.resources), responses
    ok("alter configs")
    await a.create_partitions({topic: NewPartitions(5)})
    assert len((await a.describe_topics([topic]))[0]["partitions"]) == 5
    ok("create partitions")
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    for i in range(10):
        await p.send_and_wait(topic, value=b"r%d" % i, partition=0)
    await p.stop()
    tp = TopicPartition(topic, 0)
    lows = await a.delete_records({tp: RecordsToDelete(6)})
    assert lows[tp] == 6, lows
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    assert (await c.beginning_offsets([tp]))[tp] == 6 and (await c.end_offsets([tp]))[tp] == 10
    await c.stop()
    ok("delete records")
    cluster = await a.describe_cluster()
    assert cluster["controller_id"] == 1 and cluster["cluster_id"], cluster
    ok("describe cluster")
    await a.delete_topics([topic])
    assert topic not in await a.list_topics()
    ok("delete topics")
    await a.close()


async def survive(bootstrap, ack_file, stop_file):
    topic = "survive"
    await create_topic(bootstrap, topic, PARTITIONS)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5, request_timeout_ms=5000,
                         retry_backoff_ms=100)
    await p.start()
    i = 0
    while not os.path.exists(stop_file):
        batch = []
        for _ in range(200):
            key = "s%d" % i
            try:
                batch.append((key, await p.send(topic, key=key.encode(), value=value_of(i))))
            except Exception:  # the broker is down: these records are simply not acknowledged
                await asyncio.sleep(0.05)
            i += 1
        lines = []
        for key, future in batch:
            try:
                md = await future
                lines.append("%d %d %s\n" % (md.partition, md.offset, key))
            except Exception:
                pass
        append_acks(ack_file, lines)
        await asyncio.sleep(0.01)
    await p.stop()
    ok("survive produced %d" % i)


async def verify_survive(bootstrap, ack_file):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    tps = [TopicPartition("survive", p) for p in range(PARTITIONS)]
    total = sum((await c.end_offsets(tps)).values())
    await c.stop()
    verify_survivors(read_acks(ack_file), strip(await consume(bootstrap, "survive", PARTITIONS, total)))


async def transactional(bootstrap):
    from aiokafka.errors import TransactionalIdAuthorizationFailed
    start = time.time()
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="aio-tx")
    try:
        await asyncio.wait_for(p.start(), 30)
        raise AssertionError("a transactional producer started")
    except TransactionalIdAuthorizationFailed:
        pass
    finally:
        await asyncio.wait_for(p.stop(), 10)
    took = time.time() - start
    assert took < 10, "refused only after %.1fs" % took
    ok("aiokafka transactional producer refused in %.1fs" % took)


def main():
    if len(sys.argv) < 3:
        usage()
    mode, bootstrap, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    run = {
        "roundtrip": lambda: roundtrip(bootstrap, rest[0]),
        "features": lambda: features(bootstrap),
        "admin": lambda: admin_mode(bootstrap),
        "survive": lambda: survive(bootstrap, rest[0], rest[1]),
        "verify-survive": lambda: verify_survive(bootstrap, rest[0]),
        "transactional": lambda: transactional(bootstrap),
    }[mode]
    asyncio.run(run())
    ok("ALL")


if __name__ == "__main__":
    main()
