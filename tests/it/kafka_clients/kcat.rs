//! kcat (Debian's, librdkafka 2.0): metadata; 100 000 records with acks 0, 1 and all, keyed,
//! unkeyed and to an explicit partition, each in the partition kcat reported; every codec,
//! headers, NULL keys and values, CreateTime timestamps and offsets by time; kill -9 of the
//! broker mid-production.
//!
//! kcat reports each delivery (partition and offset) on stderr at verbosity 3 (`-v -v -v`):
//! that is the acknowledgement the tests trust. It does not say which message was delivered,
//! but librdkafka reports a partition's deliveries in send order.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{run_with_deadline, Weir};
use crate::support::{free_port, require_program, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

/// Feeds `input` to `kcat <args>`; returns its stdout and stderr.
fn kcat_output(args: &[&str], input: Option<&[u8]>) -> (String, String) {
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
            let mut stdin = child.stdin.take().unwrap();
            let input = input.to_vec();
            // Written from another thread: kcat's stderr fills while it reads.
            let writer = std::thread::spawn(move || stdin.write_all(&input));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            let output = rx
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{what} did not finish"))
                .unwrap();
            writer.join().unwrap().expect("write kcat's input");
            output
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{what} failed: {stderr}");
    (String::from_utf8_lossy(&output.stdout).to_string(), stderr)
}

/// Feeds `input` to `kcat <args>` and returns its stdout.
pub(super) fn kcat(args: &[&str], input: Option<&[u8]>) -> String {
    kcat_output(args, input).0
}

/// `(partition, offset)` of every `Message delivered to partition P (offset O)` line kcat
/// printed at verbosity 3, in the order printed (offset -1 under acks=0).
fn delivery_reports(stderr: &str) -> Vec<(i32, i64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split("Message delivered to partition ").nth(1)?;
            let (partition, rest) = rest.split_once(" (offset ")?;
            let offset = rest.split(')').next()?;
            Some((partition.parse().ok()?, offset.parse().ok()?))
        })
        .collect()
}

/// One consumed record; `None` is a NULL key or value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Consumed {
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: Option<String>,
}

/// kcat's consumer from `start` to the end of `topic`, one `format` line per record.
pub(super) fn consume_formatted(bootstrap: &str, topic: &str, start: &str, format: &str) -> String {
    kcat(
        &[
            "-b", bootstrap, "-C", "-t", topic, "-o", start, "-e", "-q", "-f", format,
        ],
        None,
    )
}

/// Every record of `topic` from `start` (`beginning`, an offset, `s@<timestamp>`) to the end.
fn consume_from(bootstrap: &str, topic: &str, start: &str) -> Vec<Consumed> {
    consume_formatted(bootstrap, topic, start, "%p %o %K %S %k %s\\n")
        .lines()
        .map(|line| {
            let mut parts = line.splitn(6, ' ');
            let mut int = || -> i64 { parts.next().unwrap().parse().unwrap() };
            let (partition, offset, key_len, value_len) = (int() as i32, int(), int(), int());
            let key = parts.next().unwrap_or("").to_string();
            let value = parts.next().unwrap_or("").to_string();
            Consumed {
                partition,
                offset,
                key: (key_len >= 0).then_some(key),
                value: (value_len >= 0).then_some(value),
            }
        })
        .collect()
}

fn consume_all(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    consume_from(bootstrap, topic, "beginning")
}

fn by_partition(records: Vec<Consumed>) -> BTreeMap<i32, Vec<Consumed>> {
    let mut out: BTreeMap<i32, Vec<Consumed>> = BTreeMap::new();
    for r in records {
        out.entry(r.partition).or_default().push(r);
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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

/// What the round trip sends: two records in three carry one of 5 000 keys (the key hash
/// picks the partition), every third has none (sticky partitioning).
fn round_trip_line(i: usize) -> String {
    if i % 3 == 1 {
        format!("value-{i}")
    } else {
        format!("key-{}:value-{i}", i % 5_000)
    }
}

#[test]
fn kcat_round_trips_100k_records_with_acks_0_1_and_all_in_the_partitions_it_reports() {
    let weir = Weir::start_with(1, &["num.partitions=3"]);
    let b = weir.bootstrap();
    for acks in ["0", "1", "all"] {
        let topic = format!("kcat-acks-{acks}");
        let acks_setting = format!("acks={acks}");
        let produce = |extra: &[&str], input: &[u8]| {
            let mut args = vec!["-b", &b, "-P", "-t", &topic, "-K:", "-X", &acks_setting];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["-v", "-v", "-v"]);
            delivery_reports(&kcat_output(&args, Some(input)).1)
        };
        let mut input = String::new();
        for i in 0..100_000 {
            input.push_str(&round_trip_line(i));
            input.push('\n');
        }
        let mut reported = produce(&[], input.as_bytes());
        assert_eq!(reported.len(), 100_000, "acks={acks}: delivery reports");
        // Then records sent to an explicit partition.
        let explicit: String = (0..1_000).map(|j| format!("explicit-{j}\n")).collect();
        let explicit_reports = produce(&["-p", "2"], explicit.as_bytes());
        assert_eq!(explicit_reports.len(), 1_000);
        assert!(
            explicit_reports.iter().all(|(p, _)| *p == 2),
            "acks={acks}: explicit partition 2, reported {:?}",
            explicit_reports.iter().find(|(p, _)| *p != 2)
        );
        reported.extend(explicit_reports);

        let partitions = by_partition(consume_all(&b, &topic));
        assert_eq!(
            partitions.values().map(Vec::len).sum::<usize>(),
            101_000,
            "acks={acks}"
        );
        assert_eq!(
            partitions.len(),
            3,
            "acks={acks}: records in every partition"
        );
        let mut key_home: BTreeMap<String, i32> = BTreeMap::new();
        for (p, records) in &partitions {
            // Each partition holds what kcat was told it holds: as many records, and under
            // acks 1 and all exactly the offsets it was told.
            let mut told: Vec<i64> = reported
                .iter()
                .filter(|(rp, _)| rp == p)
                .map(|(_, o)| *o)
                .collect();
            assert_eq!(told.len(), records.len(), "acks={acks}: partition {p}");
            if acks != "0" {
                told.sort_unstable();
                assert!(
                    told.iter().enumerate().all(|(n, o)| *o == n as i64),
                    "acks={acks}: partition {p} reported offsets are not 0..{}",
                    records.len()
                );
            }
            let (mut last, mut last_explicit) = (-1i64, -1i64);
            for (n, r) in records.iter().enumerate() {
                assert_eq!(r.offset, n as i64, "acks={acks}: partition {p}");
                let value = r.value.as_deref().expect("a value");
                if let Some(j) = value.strip_prefix("explicit-") {
                    let j: i64 = j.parse().unwrap();
                    assert!(j > last_explicit, "partition {p}: {value} out of order");
                    last_explicit = j;
                    assert_eq!(r.key, None);
                    continue;
                }
                let i: i64 = value.trim_start_matches("value-").parse().unwrap();
                assert!(i > last, "partition {p}: value-{i} after value-{last}");
                last = i;
                // Same bytes: the line split back into key and value.
                assert_eq!(
                    match &r.key {
                        Some(k) => format!("{k}:{value}"),
                        None => value.to_string(),
                    },
                    round_trip_line(i as usize)
                );
                if let Some(k) = &r.key {
                    assert_eq!(
                        *key_home.entry(k.clone()).or_insert(*p),
                        *p,
                        "key {k} in two partitions"
                    );
                }
            }
        }
        assert_eq!(
            partitions[&2].last().unwrap().value.as_deref(),
            Some("explicit-999")
        );
        let homes: BTreeSet<i32> = key_home.values().copied().collect();
        assert!(
            homes.len() > 1,
            "acks={acks}: every key hashed to {homes:?}"
        );
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
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_str()));
            assert_eq!(
                r.value.as_deref(),
                Some(format!("value-{i}-").repeat(5).as_str())
            );
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
    let out = consume_formatted(&b, "kcat-headers", "beginning", "%h %s\\n");
    assert_eq!(out.trim(), "trace=abc,empty= payload");
}

#[test]
fn kcat_sends_null_keys_and_values_and_finds_offsets_by_create_time() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    // -Z: an empty key or value goes out as NULL.
    kcat(
        &["-b", &b, "-P", "-t", "kcat-nulls", "-K:", "-Z"],
        Some(b":\nk:\n:v\n"),
    );
    let got: Vec<(Option<String>, Option<String>)> = consume_all(&b, "kcat-nulls")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        got,
        vec![
            (None, None),
            (Some("k".into()), None),
            (None, Some("v".into()))
        ]
    );

    // kcat stamps records with CreateTime = now: two batches produced apart in time.
    let timestamps = |from: &str| -> Vec<(i64, i64)> {
        consume_formatted(&b, "kcat-times", from, "%o %T\\n")
            .lines()
            .map(|l| {
                let (o, t) = l.split_once(' ').unwrap();
                (o.parse().unwrap(), t.parse().unwrap())
            })
            .collect()
    };
    let before = now_ms();
    let first: String = (0..10).map(|i| format!("a{i}\n")).collect();
    kcat(
        &["-b", &b, "-P", "-t", "kcat-times"],
        Some(first.as_bytes()),
    );
    let first_max = timestamps("beginning")
        .iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap();
    assert!(
        (before..=now_ms()).contains(&first_max),
        "CreateTime {first_max} is not the time of production"
    );
    wait_until("the clock to pass the first batch", LIMIT, || {
        (now_ms() > first_max).then_some(())
    });
    let second: String = (0..5).map(|i| format!("b{i}\n")).collect();
    kcat(
        &["-b", &b, "-P", "-t", "kcat-times"],
        Some(second.as_bytes()),
    );
    let all = timestamps("beginning");
    assert_eq!(all.len(), 15);
    let second_max = all.iter().map(|(_, t)| *t).max().unwrap();
    let envelope = kcat(
        &[
            "-b",
            &b,
            "-C",
            "-t",
            "kcat-times",
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
            "-q",
            "-J",
        ],
        None,
    );
    assert!(envelope.contains("\"tstype\":\"create\""), "{envelope}");

    // ListOffsets by time (-Q), and a consumer starting at a timestamp (-o s@).
    let offset_for = |ts: i64| -> String {
        kcat(&["-b", &b, "-Q", "-t", &format!("kcat-times:0:{ts}")], None)
            .trim()
            .to_string()
    };
    assert_eq!(offset_for(0), "kcat-times [0] offset 0");
    assert_eq!(offset_for(first_max + 1), "kcat-times [0] offset 10");
    assert_eq!(offset_for(second_max + 1), "kcat-times [0] offset -1");
    let later = timestamps(&format!("s@{}", first_max + 1));
    assert_eq!(
        later.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (10..15).collect::<Vec<_>>()
    );
}

/// Stops the line feeder and kills kcat if the test fails first.
struct Producer {
    child: std::process::Child,
    stop: Arc<AtomicBool>,
    feeder: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

#[test]
fn kcat_acks_survive_kill_9_and_kcat_reconnects() {
    require_program("kcat");
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut weir = Weir::start_in(1, port, &data.path().join("cluster"), &["num.partitions=3"]);
    let b = weir.bootstrap();
    let reports = data.path().join("kcat.stderr");
    let mut child = Command::new("kcat")
        .args([
            "-b",
            &b,
            "-P",
            "-E", // a broker going away is not a reason to exit
            "-t",
            "kcat-survive",
            "-K:",
            "-X",
            "acks=1",
            "-X",
            "reconnect.backoff.max.ms=500",
            "-X",
            "message.timeout.ms=120000",
            "-v",
            "-v",
            "-v",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(File::create(&reports).unwrap())
        .spawn()
        .expect("start kcat");
    let mut stdin = child.stdin.take().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let lines: String = (i..i + 200)
                    .map(|i| format!("k{}:s{i}\n", i % 100))
                    .collect();
                if stdin.write_all(lines.as_bytes()).is_err() {
                    return;
                }
                i += 200;
                // Pacing only: a few thousand records a second.
                std::thread::sleep(Duration::from_millis(20));
            }
            // Dropping stdin ends kcat's input: it delivers what it holds and exits.
        }
    });
    let mut producer = Producer {
        child,
        stop,
        feeder: Some(feeder),
    };
    let acked = || delivery_reports(&std::fs::read_to_string(&reports).unwrap_or_default());
    wait_until(
        "acknowledgements before the kill",
        Duration::from_secs(60),
        || (acked().len() >= 3_000).then_some(()),
    );
    weir.kill9();
    let at_kill = acked().len();
    weir.restart();
    wait_until(
        "acknowledgements after the restart",
        Duration::from_secs(90),
        || (acked().len() >= at_kill + 3_000).then_some(()),
    );
    producer.stop.store(true, Ordering::Relaxed);
    producer.feeder.take().unwrap().join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while producer.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "kcat did not exit after its input ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let acked = acked();
    eprintln!(
        "kcat: {at_kill} acknowledged at the kill, {} in all",
        acked.len()
    );
    let stored = by_partition(consume_all(&b, "kcat-survive"));
    let present: BTreeSet<(i32, i64)> = stored
        .values()
        .flatten()
        .map(|r| (r.partition, r.offset))
        .collect();
    let lost: Vec<_> = acked.iter().filter(|a| !present.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost ({at_kill} acknowledged at the kill), e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(3)]
    );
    // One report per message: at least as many distinct records are stored (a retry after
    // the restart may store one twice; none may be missing).
    let distinct: BTreeSet<&str> = stored
        .values()
        .flatten()
        .filter_map(|r| r.value.as_deref())
        .collect();
    assert!(
        distinct.len() >= acked.len(),
        "{} distinct records stored for {} acknowledgements",
        distinct.len(),
        acked.len()
    );
    for records in stored.values() {
        for (n, r) in records.iter().enumerate() {
            assert_eq!(r.offset, n as i64, "partition {}", r.partition);
        }
    }
}
