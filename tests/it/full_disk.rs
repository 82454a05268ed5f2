//! A full disk, as Kafka handles it: broker 1's `log.dirs` is a small tmpfs, filled up while
//! it leads a partition. Its next produce fails with KAFKA_STORAGE_ERROR, the dir goes offline
//! (DescribeLogDirs says so), the controller hears of it through
//! `/log_dir_event_notification` and moves the leadership to another ISR replica, which keeps
//! every acknowledged record and takes new ones. Once space returns, a restart of broker 1
//! brings the dir back with its data, and its replica rejoins the ISR.
//!
//! Other I/O errors take the dir offline the same way (Kafka's `LogDirFailureChannel` takes
//! any `IOException`): broker 1's `log.dirs` on a loop device whose writes start failing (see
//! [`crate::loop_disk`]) loses the dir at its next fsync, and its leadership moves.
//!
//! Mounting needs root; where `mount` fails the test prints why and returns (skipped, not
//! silently passed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    create_topics_request, describe_log_dirs_request, ApiKey, CreateTopicsRequest,
    CreateTopicsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
};
use kafka_protocol::records::RecordBatchDecoder;
use weir::actors::replica::{FetchIsolation, ReadRecords};
use weir::cluster::faults::Fault;
use weir::cluster::status::PartitionStatus;
use weir::cluster::Cluster;

use crate::loop_disk::LoopDisk;
use crate::support::wait_until_async;
use weir::demo::client::{topic_name as name, Client};

const DEADLINE: Duration = Duration::from_secs(30);
const KAFKA_STORAGE_ERROR: i16 = 56;
const TOPIC: &str = "disk";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0xAAu8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                break;
            }
        }
    }
    written
}

fn values(prefix: &str, n: usize, size: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let mut v = format!("{prefix}-{i}-").into_bytes();
            v.resize(size, b'x');
            Bytes::from(v)
        })
        .collect()
}

fn partition(cluster: &Cluster) -> Option<PartitionStatus> {
    cluster
        .status()
        .partitions
        .into_iter()
        .find(|p| p.topic == TOPIC && p.partition == 0)
}

async fn wait_partition(
    cluster: &Cluster,
    what: &str,
    f: impl Fn(&PartitionStatus) -> bool,
) -> PartitionStatus {
    wait_until_async(what, DEADLINE, || {
        let p = partition(cluster).filter(|p| f(p));
        async move { p }
    })
    .await
}

async fn client(cluster: &Cluster, broker: i32) -> Client {
    Client::connect(cluster.broker(broker).expect("broker").addr, "test")
        .await
        .expect("connect")
}

/// The values stored in broker `broker`'s replica, in offset order.
async fn stored_values(cluster: &Cluster, broker: i32) -> Vec<Bytes> {
    let handle = cluster
        .broker(broker)
        .expect("broker")
        .shared
        .replicas
        .get(TOPIC, 0)
        .expect("replica");
    let mut records = handle
        .addr
        .send(ReadRecords {
            fetch_offset: 0,
            max_bytes: 64 << 20,
            min_one: true,
            isolation: FetchIsolation::LogEnd,
            current_leader_epoch: None,
        })
        .await
        .expect("replica alive")
        .records;
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut records).expect("stored batches decode") {
        out.extend(set.records.into_iter().filter_map(|r| r.value));
    }
    out
}

async fn describe_log_dir_errors(cluster: &Cluster, broker: i32) -> Vec<(String, i16)> {
    let response: DescribeLogDirsResponse = client(cluster, broker)
        .await
        .call(
            ApiKey::DescribeLogDirs,
            1,
            &DescribeLogDirsRequest::default()
                .with_topics(None::<Vec<describe_log_dirs_request::DescribableLogDirTopic>>),
        )
        .await
        .expect("DescribeLogDirs");
    response
        .results
        .iter()
        .map(|r| (r.log_dir.to_string(), r.error_code))
        .collect()
}

/// Creates the topic's one partition on brokers 1..=`brokers`, led by broker 1 (the first
/// replica of its assignment), and waits for its full ISR.
async fn create_led_by_broker_1(cluster: &Cluster, brokers: i32) {
    let created: CreateTopicsResponse = client(cluster, 2)
        .await
        .call(
            ApiKey::CreateTopics,
            5,
            &CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(name(TOPIC))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![
                        create_topics_request::CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids((1..=brokers).map(Into::into).collect()),
                    ])]),
        )
        .await
        .expect("create topic");
    assert_eq!(created.topics[0].error_code, 0, "creating {TOPIC}");
    wait_partition(cluster, "broker 1 leads with a full ISR", |p| {
        p.leader == 1 && p.isr.len() == brokers as usize
    })
    .await;
}

#[actix::test]
async fn a_full_log_dir_goes_offline_its_leadership_moves_and_a_restart_brings_it_back() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    // `weir cluster` puts broker 1's log.dirs at <data dir>/broker-1: make that the tmpfs.
    let disk = match Tmpfs::mount(&dir.path().join("broker-1"), "16m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED a_full_log_dir_goes_offline...: cannot mount a tmpfs ({why}); this test needs root");
            return;
        }
    };
    let mut cluster = Cluster::builder()
        .brokers(3)
        .base_port(0)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("min.insync.replicas", "2")
        .set("zookeeper.session.timeout.ms", "6000")
        .start()
        .await
        .expect("cluster starts");

    create_led_by_broker_1(&cluster, 3).await;

    // Acknowledged by the whole ISR before the disk fills: 40 KiB, past the first index entry.
    let acked = values("before", 40, 1024);
    let mut leader = client(&cluster, 1).await;
    for value in &acked {
        let produced = leader
            .produce_values(TOPIC, 0, -1, std::slice::from_ref(value), 10_000)
            .await
            .unwrap();
        assert_eq!(produced.error_code, 0, "producing before the disk fills");
    }

    let filler = disk.0.join("filler");
    let filled = fill(&filler);
    eprintln!("filled the tmpfs with {filled} bytes");

    // 256 KiB cannot fit: the append fails with ENOSPC.
    let too_much = values("after", 1, 256 * 1024);
    let produced = leader
        .produce_values(TOPIC, 0, -1, &too_much, 10_000)
        .await
        .unwrap();
    assert_eq!(
        produced.error_code, KAFKA_STORAGE_ERROR,
        "a produce to the full log dir"
    );

    // The controller moves the leadership off broker 1's offline replica.
    let moved = wait_partition(&cluster, "another ISR replica leads", |p| {
        p.leader > 1 && !p.isr.contains(&1)
    })
    .await;
    let dirs = describe_log_dir_errors(&cluster, 1).await;
    assert!(
        dirs.iter().any(|(_, code)| *code == KAFKA_STORAGE_ERROR),
        "DescribeLogDirs reports the offline dir: {dirs:?}"
    );
    // Broker 1 answers for its offline replica with KAFKA_STORAGE_ERROR, not with data.
    let again = leader
        .produce_values(TOPIC, 0, 1, &acked[..1], 10_000)
        .await
        .unwrap();
    assert!(
        [KAFKA_STORAGE_ERROR, 6].contains(&again.error_code),
        "broker 1 no longer takes produce for the partition: {}",
        again.error_code
    );

    // The new leader has everything acknowledged and takes new records.
    let more = values("moved", 5, 100);
    let mut new_leader = client(&cluster, moved.leader).await;
    for value in &more {
        let produced = new_leader
            .produce_values(TOPIC, 0, -1, std::slice::from_ref(value), 10_000)
            .await
            .unwrap();
        assert_eq!(produced.error_code, 0, "producing to the new leader");
    }
    let (code, read) = new_leader.read_all(TOPIC, 0, 0).await.unwrap();
    assert_eq!(code, 0);
    let read: Vec<Bytes> = read.into_iter().map(|(_, v)| v).collect();
    let expected: Vec<Bytes> = acked.iter().chain(more.iter()).cloned().collect();
    assert_eq!(read, expected, "every acknowledged record, in order");

    // Space returns; a restart of broker 1 recovers the dir and its replica catches up.
    std::fs::remove_file(&filler).unwrap();
    cluster.inject(Fault::Crash(1)).await.expect("crash 1");
    cluster.inject(Fault::Restart(1)).await.expect("restart 1");
    wait_partition(&cluster, "broker 1 rejoins the ISR", |p| p.isr.contains(&1)).await;
    let on_broker_1 = wait_until_async("broker 1 holds every record", DEADLINE, || {
        let cluster = &cluster;
        let expected = expected.clone();
        async move {
            let stored = stored_values(cluster, 1).await;
            (stored == expected).then_some(stored)
        }
    })
    .await;
    assert_eq!(on_broker_1.len(), 45);
    // The controller counts broker 1's replica as online again: Metadata lists no offline
    // replica once the cluster has caught up.
    wait_until_async("no offline replica in the metadata", DEADLINE, || {
        let snapshot = cluster
            .broker(2)
            .expect("broker 2")
            .shared
            .metadata
            .snapshot();
        let offline = snapshot
            .partition(TOPIC, 0)
            .map(|p| p.offline_replicas.clone());
        async move { (offline == Some(vec![])).then_some(()) }
    })
    .await;
    let dirs = describe_log_dir_errors(&cluster, 1).await;
    assert!(
        dirs.iter().all(|(_, code)| *code == 0),
        "the dir is back online: {dirs:?}"
    );

    cluster.shutdown().await.expect("clean shutdown");
    drop(disk);
}

#[actix::test]
async fn a_log_dir_whose_device_fails_writes_goes_offline_at_its_next_fsync_and_leadership_moves() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    // No journal: the file system itself keeps going, so the first failure the broker sees
    // is its own fsync's EIO (a journal would abort and make the mount read-only first).
    let disk = LoopDisk::mount(
        &dir.path().join("disk.img"),
        &dir.path().join("broker-1"),
        false,
    );
    let mut disk = match disk {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED a_log_dir_whose_device_fails_writes...: cannot make a loop device ({why}); this test needs root, losetup and mkfs.ext4");
            return;
        }
    };
    let cluster = Cluster::builder()
        .brokers(2)
        .base_port(0)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("min.insync.replicas", "1")
        // Appends go to the page cache; the log is fsynced every 100 ms (Kafka's flush.ms).
        .set("log.flush.interval.ms", "100")
        .start()
        .await
        .expect("cluster starts");
    create_led_by_broker_1(&cluster, 2).await;
    let mut leader = client(&cluster, 1).await;
    let mut acked = values("before", 20, 1024);
    for value in &acked {
        let produced = leader
            .produce_values(TOPIC, 0, -1, std::slice::from_ref(value), 10_000)
            .await
            .unwrap();
        assert_eq!(produced.error_code, 0, "producing before the device fails");
    }

    if let Err(why) = disk.fail_writes() {
        eprintln!(
            "SKIPPED a_log_dir_whose_device_fails_writes...: cannot make the device fail ({why})"
        );
        cluster.shutdown().await.ok();
        return;
    }
    // Writes still land in the page cache; the next fsync fails with EIO and takes the dir
    // offline: produce then answers KAFKA_STORAGE_ERROR (or NOT_LEADER once it moved).
    let deadline = std::time::Instant::now() + DEADLINE;
    let code = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "broker 1 kept acknowledging produce on a device that fails writes"
        );
        let value = values(&format!("during-{}", acked.len()), 1, 1024);
        let produced = leader
            .produce_values(TOPIC, 0, -1, &value, 10_000)
            .await
            .unwrap();
        if produced.error_code != 0 {
            break produced.error_code;
        }
        acked.extend(value);
    };
    assert!(
        [KAFKA_STORAGE_ERROR, 6].contains(&code),
        "a produce to the failed dir: {code}"
    );
    let dirs = describe_log_dir_errors(&cluster, 1).await;
    assert!(
        dirs.iter().any(|(_, code)| *code == KAFKA_STORAGE_ERROR),
        "DescribeLogDirs reports the offline dir: {dirs:?}"
    );
    let moved = wait_partition(&cluster, "broker 2 leads", |p| p.leader == 2).await;
    // Everything acknowledged by the ISR is on the new leader, which takes new records.
    let mut new_leader = client(&cluster, moved.leader).await;
    let after = values("moved", 1, 100);
    let produced = new_leader
        .produce_values(TOPIC, 0, -1, &after, 10_000)
        .await
        .unwrap();
    assert_eq!(produced.error_code, 0, "producing to the new leader");
    let (code, read) = new_leader.read_all(TOPIC, 0, 0).await.unwrap();
    assert_eq!(code, 0);
    // In order, with nothing acknowledged missing (the refused produce may or may not have
    // reached broker 2 before the error: not acknowledged is not a promise either way).
    let read: Vec<Bytes> = read.into_iter().map(|(_, v)| v).collect();
    let mut unread = read.iter();
    let missing: Vec<String> = acked
        .iter()
        .chain(after.iter())
        .filter(|v| !unread.any(|r| r == *v))
        .map(|v| String::from_utf8_lossy(&v[..v.len().min(16)]).into_owned())
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged records missing or out of order on the new leader: {missing:?} ({} read, {} acknowledged)",
        read.len(),
        acked.len() + after.len()
    );
    eprintln!(
        "{} records acknowledged before broker 1's fsync failed took its dir offline; all on broker 2",
        acked.len()
    );
    cluster.shutdown().await.ok();
    drop(disk);
}
