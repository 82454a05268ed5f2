//! A broker holding more partitions than the soft open-file limit it was started under:
//! each replica keeps its active segment's `.log` open, so weir raises the soft limit to the
//! hard one at start, as the JVM does for Kafka.

use super::kcat::kcat;
use super::Weir;

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
