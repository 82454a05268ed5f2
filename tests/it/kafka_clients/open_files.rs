//! A broker holding more partitions than the open-file limit it was started under. weir
//! raises the soft limit to the hard one at start, as the JVM does for Kafka, and keeps at
//! most half of it in `.log` descriptors (the least recently used are closed and reopened on
//! demand), so even a hard limit far below the partition count is enough.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use weir::demo::client::Client;

use super::kcat::kcat;
use super::Weir;
use crate::support::wait_until;

const PARTITIONS: libc::rlim_t = 600;
const SOFT_LIMIT: libc::rlim_t = 256;

/// Lowers this test process's soft limit (nextest runs each test in a process of its own);
/// the `weir` it starts inherits it. `None` when the hard limit is too low for the test.
fn lower_soft_open_file_limit(to: libc::rlim_t) -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_max < PARTITIONS * 2 {
            return None;
        }
        limit.rlim_cur = to;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    Some(limit.rlim_max)
}

fn soft_open_file_limit_of(pid: u32) -> libc::rlim_t {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn a_broker_with_more_partitions_than_the_soft_open_file_limit_serves_them_all() {
    let Some(hard) = lower_soft_open_file_limit(SOFT_LIMIT) else {
        eprintln!(
            "SKIPPED: the hard open-file limit is below {}",
            PARTITIONS * 2
        );
        return;
    };
    let mut weir = Weir::start_with(
        1,
        &[
            &format!("num.partitions={PARTITIONS}"),
            "default.replication.factor=1",
        ],
    );
    assert_eq!(soft_open_file_limit_of(weir.pid()), hard);
    let bootstrap = weir.bootstrap();
    let last = (PARTITIONS - 1).to_string();
    // The producer's metadata request creates the topic with every partition.
    kcat(
        &["-b", &bootstrap, "-P", "-t", "wide", "-p", &last],
        Some(b"into the last partition\n"),
    );
    let partitions: Vec<serde_json::Value> = weir.status()["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["topic"] == "wide")
        .cloned()
        .collect();
    assert_eq!(partitions.len() as libc::rlim_t, PARTITIONS);
    assert!(
        partitions.iter().all(|p| p["leader"] == 1),
        "a partition has no leader"
    );
    let read = kcat(
        &[
            "-b",
            &bootstrap,
            "-C",
            "-t",
            "wide",
            "-p",
            &last,
            "-o",
            "beginning",
            "-e",
        ],
        None,
    );
    assert_eq!(read.trim(), "into the last partition");
}

/// Sets this test process's soft and hard limit to `to` (nextest runs each test in a process
/// of its own); the `weir` it starts inherits both, and cannot raise them.
fn lower_hard_open_file_limit(to: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: to,
        rlim_max: to,
    };
    // SAFETY: setrlimit only reads the struct passed to it.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Descriptors of `pid` open on `.log` files.
fn open_log_files_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.extension().is_some_and(|e| e == "log"))
                .count()
        })
        .unwrap_or(0)
}

fn value(partition: i32, n: usize) -> Bytes {
    Bytes::from(format!("partition {partition} record {n}"))
}

/// Every partition holds exactly its two records.
async fn assert_every_partition_reads_back(client: &mut Client, topic: &str, partitions: i32) {
    for p in 0..partitions {
        let (error, records) = client.read_all(topic, p, 0).await.expect("fetch");
        assert_eq!(error, 0, "partition {p}");
        let expected = vec![(0, value(p, 0)), (1, value(p, 1))];
        assert_eq!(records, expected, "partition {p}");
    }
}

#[test]
fn a_thousand_partitions_are_served_under_a_hard_limit_of_256_open_files_across_a_kill_9() {
    const LIMIT: libc::rlim_t = 256;
    const WIDE: i32 = 1000;
    lower_hard_open_file_limit(LIMIT);
    let mut weir = Weir::start_with(1, &["default.replication.factor=1"]);
    let addr: SocketAddr = weir.brokers[0].parse().expect("broker address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = runtime
        .block_on(Client::connect(addr, "open-files-test"))
        .expect("connect");
    let created = runtime
        .block_on(client.create_topic("wide", WIDE, 1, None))
        .expect("create");
    assert_eq!(created, 0, "CreateTopics error");
    wait_until(
        "every partition has a leader",
        Duration::from_secs(60),
        || {
            let leaders = runtime.block_on(client.leaders("wide")).ok()?;
            (leaders.len() == WIDE as usize && leaders.iter().all(|(_, l)| *l == 1)).then_some(())
        },
    );
    // Twice round the partitions: every `.log` is written again after most were closed.
    for n in 0..2 {
        for p in 0..WIDE {
            let produced = runtime
                .block_on(client.produce_values("wide", p, 1, &[value(p, n)], 10_000))
                .expect("produce");
            assert_eq!(
                (produced.error_code, produced.base_offset),
                (0, n as i64),
                "partition {p}"
            );
        }
    }
    runtime.block_on(assert_every_partition_reads_back(&mut client, "wide", WIDE));
    let open_logs = open_log_files_of(weir.pid());
    assert!(
        open_logs <= LIMIT as usize / 2,
        "{open_logs} .log files open, more than half the limit"
    );

    // Unclean: every partition is recovered from its `.log` at start.
    drop(client);
    weir.restart();
    let addr: SocketAddr = weir.brokers[0].parse().expect("broker address");
    let mut client = runtime
        .block_on(Client::connect(addr, "open-files-test"))
        .expect("connect");
    wait_until(
        "every partition is led again",
        Duration::from_secs(60),
        || {
            let leaders = runtime.block_on(client.leaders("wide")).ok()?;
            (leaders.len() == WIDE as usize && leaders.iter().all(|(_, l)| *l == 1)).then_some(())
        },
    );
    runtime.block_on(assert_every_partition_reads_back(&mut client, "wide", WIDE));
}
