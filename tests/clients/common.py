"""Shared checks for the client scripts the Rust integration tests run (tests/it/kafka_clients).

Every script takes a mode and the bootstrap address, asserts, prints one `OK <what>` line per
check and exits non-zero on the first failure.
"""

import logging
import os
import sys
import time

RECORDS = 100_000
PARTITIONS = 3
# Idempotent fault runs send at most this many records ahead of the acknowledgements, so a
# broker pause or kill lands mid-run whatever the client's speed.
UNACKNOWLEDGED = 2_000


def key_of(i):
    """Two records in three carry a key; every third has none (sticky / round-robin)."""
    if i % 3 == 1:
        return None
    return b"key-%06d" % i


def value_of(i):
    """Distinct, partly binary values of varying length."""
    return b"value-%06d-" % i + bytes((i * 7 + j) % 256 for j in range(i % 40))


def explicit_partition(i):
    """Every third keyed record names its partition."""
    return (i // 3) % PARTITIONS if i % 3 == 2 else None


class Expected:
    """What the producer was told, per partition, in acknowledgement order."""

    def __init__(self):
        self.by_partition = {}

    def add(self, partition, offset, key, value):
        self.by_partition.setdefault(partition, []).append((offset, key, value))

    def total(self):
        return sum(len(v) for v in self.by_partition.values())

    def verify(self, consumed, check_offsets):
        """`consumed`: partition -> [(offset, key, value)] read from the beginning."""
        for partition, expected in self.by_partition.items():
            got = consumed.get(partition, [])
            assert len(got) == len(expected), (
                "partition %d: produced %d records, read %d" % (partition, len(expected), len(got)))
            for n, ((e_off, e_key, e_val), (g_off, g_key, g_val)) in enumerate(zip(expected, got)):
                assert g_off == n, "partition %d: record %d has offset %d" % (partition, n, g_off)
                if check_offsets:
                    assert e_off == g_off, (
                        "partition %d: acknowledged offset %d, read at %d" % (partition, e_off, g_off))
                assert (g_key, g_val) == (e_key, e_val), (
                    "partition %d offset %d: expected %r/%r, read %r/%r"
                    % (partition, g_off, e_key, e_val[:20], g_key, (g_val or b"")[:20]))
        extra = set(consumed) - set(self.by_partition)
        assert not any(consumed[p] for p in extra), "records in unexpected partitions %s" % extra


def check_partitions(expected, produced_to):
    """Explicitly partitioned records landed where they were sent."""
    for i, partition in produced_to:
        want = explicit_partition(i)
        if want is not None:
            assert partition == want, "record %d asked for partition %d, got %d" % (i, want, partition)


def ok(what):
    print("OK", what, flush=True)


def deadline(seconds):
    end = time.time() + seconds
    return lambda: time.time() < end


def append_acks(path, lines):
    """The survive mode's acknowledgement log: `partition offset key` per line."""
    with open(path, "a") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())


def read_acks(path):
    acks = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                acks.append((int(parts[0]), int(parts[1]), parts[2].encode()))
    return acks


def verify_survivors(acks, consumed):
    """Every acknowledged record is still at its offset with its key."""
    index = {}
    for partition, records in consumed.items():
        for offset, key, _ in records:
            index[(partition, offset)] = key
    missing = [(p, o, k) for p, o, k in acks if index.get((p, o)) != k]
    assert not missing, "%d acknowledged records lost, first %s" % (len(missing), missing[:3])
    ok("%d acknowledged records survived" % len(acks))


def verify_exactly_once(acks, consumed, expected_total):
    """Idempotent production of keys `s<i>` (i ascending): every acknowledged record is at its
    offset, no key is stored twice, and each partition holds its keys in send order."""
    verify_survivors(acks, consumed)
    assert len(acks) == expected_total, "%d of %d records acknowledged" % (len(acks), expected_total)
    seen = set()
    for partition, records in consumed.items():
        last = -1
        for offset, key, _ in records:
            assert key not in seen, "partition %d offset %d: %r stored twice" % (partition, offset, key)
            seen.add(key)
            i = int(key[1:])
            assert i > last, "partition %d offset %d: %r after s%d" % (partition, offset, key, last)
            last = i
    ok("%d records stored exactly once, in order per partition" % len(seen))


def timeout_logger(name, event_file, needle):
    """A logger that appends a `timeout` line to `event_file` for every record whose message
    contains `needle` (a client's "request timed out" log line), so a test can wait until a
    client has really given up on a request."""

    class Events(logging.Handler):
        def emit(self, record):
            if needle in record.getMessage():
                with open(event_file, "a") as f:
                    f.write("timeout\n")

    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.addHandler(Events())
    return logger


def usage():
    print(__doc__, file=sys.stderr)
    sys.exit(2)
