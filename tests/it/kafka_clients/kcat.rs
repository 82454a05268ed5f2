//! kcat (Debian's, librdkafka 2.0): metadata, produce and consume, every codec, headers.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{run_with_deadline, Weir};
use crate::support::require_program;

const LIMIT: Duration = Duration::from_secs(120);

/// Feeds `input` to `kcat <args>` and returns its stdout.
pub(super) fn kcat(args: &[&str], input: Option<&[u8]>) -> String {
    require_program("kcat");
    let what = format!("kcat {args:?}");
    let output = match input {
        None => run_with_deadline(Command::new("kcat").args(args), LIMIT),
        Some(input) => {
            let mut child = Command::new("kcat")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start kcat");
            child.stdin.take().unwrap().write_all(input).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            rx.recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{what} did not finish"))
                .unwrap()
        }
    };
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Every record of `topic` from the beginning to the end, one `format` line each (kcat's
/// `-f`).
pub(super) fn consume_formatted(bootstrap: &str, topic: &str, format: &str) -> String {
    kcat(
        &[
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            format,
        ],
        None,
    )
}

/// Every record of `topic` as `(partition, offset, key, value)`.
fn consume_all(bootstrap: &str, topic: &str) -> Vec<(i32, i64, String, String)> {
    consume_formatted(bootstrap, topic, "%p %o %k %s\\n")
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let p = parts.next().unwrap().parse().unwrap();
            let o = parts.next().unwrap().parse().unwrap();
            let k = parts.next().unwrap_or("").to_string();
            let v = parts.next().unwrap_or("").to_string();
            (p, o, k, v)
        })
        .collect()
}

#[test]
fn kcat_lists_the_broker_as_controller_and_the_topics() {
    let weir = Weir::start(1);
    kcat(
        &["-b", &weir.bootstrap(), "-P", "-t", "listed"],
        Some(b"one\n"),
    );
    let out = kcat(&["-b", &weir.bootstrap(), "-L"], None);
    assert!(out.contains("(controller)"), "{out}");
    assert!(out.contains("topic \"listed\" with 1 partitions"), "{out}");
    assert!(out.contains("leader 1, replicas: 1, isrs: 1"), "{out}");
}

#[test]
fn kcat_round_trips_100k_keyed_records_with_acks_0_1_and_all() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    for acks in ["0", "1", "all"] {
        let topic = format!("kcat-acks-{acks}");
        let mut input = Vec::new();
        for i in 0..100_000 {
            writeln!(input, "key-{}:value-{i}", i % 5_000).unwrap();
        }
        kcat(
            &[
                "-b",
                &b,
                "-P",
                "-t",
                &topic,
                "-K:",
                "-X",
                &format!("acks={acks}"),
                "-X",
                "topic.partitioner=murmur2_random",
            ],
            Some(&input),
        );
        let records = consume_all(&b, &topic);
        assert_eq!(records.len(), 100_000, "acks={acks}");
        // Per partition: offsets 0.., values in the order they were produced, and every key
        // in exactly one partition (the key hash decides it).
        let mut partitions: BTreeMap<i32, Vec<(i64, String, String)>> = BTreeMap::new();
        for (p, o, k, v) in records {
            partitions.entry(p).or_default().push((o, k, v));
        }
        let mut key_home: BTreeMap<String, i32> = BTreeMap::new();
        let mut seen = 0;
        for (p, recs) in &partitions {
            let mut last = -1i64;
            for (n, (o, k, v)) in recs.iter().enumerate() {
                assert_eq!(*o, n as i64);
                let i: i64 = v.trim_start_matches("value-").parse().unwrap();
                assert!(i > last, "partition {p}: value-{i} after value-{last}");
                last = i;
                assert_eq!(k, &format!("key-{}", i % 5_000));
                assert_eq!(
                    *key_home.entry(k.clone()).or_insert(*p),
                    *p,
                    "key {k} in two partitions"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 100_000);
    }
}

#[test]
fn kcat_reads_back_every_codec_and_headers() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    let mut input = Vec::new();
    for i in 0..2_000 {
        writeln!(input, "k{i}:{}", format!("value-{i}-").repeat(5)).unwrap();
    }
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        kcat(
            &["-b", &b, "-P", "-t", &topic, "-K:", "-z", codec],
            Some(&input),
        );
        let records = consume_all(&b, &topic);
        assert_eq!(records.len(), 2_000, "{codec}");
        for (i, (_, o, k, v)) in records.iter().enumerate() {
            assert_eq!(*o, i as i64);
            assert_eq!(k, &format!("k{i}"));
            assert_eq!(v, &format!("value-{i}-").repeat(5));
        }
    }
    kcat(
        &[
            "-b",
            &b,
            "-P",
            "-t",
            "kcat-headers",
            "-H",
            "trace=abc",
            "-H",
            "empty=",
        ],
        Some(b"payload\n"),
    );
    let out = consume_formatted(&b, "kcat-headers", "%h %s\\n");
    assert_eq!(out.trim(), "trace=abc,empty= payload");
}
