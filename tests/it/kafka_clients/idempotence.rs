//! Idempotent producers end to end: kafka-python with its defaults and confluent-kafka with
//! `enable.idempotence=true` send 100 000 records through two faults, and every record is
//! stored exactly once, in send order per partition:
//! - the broker is paused (SIGSTOP) past the client's request timeout: the client gives up on
//!   requests the broker appends once it resumes, and retries them with the same sequences,
//!   which the broker answers as duplicates from its in-memory producer state;
//! - the broker is paused again, and once the client has given up on a request the client
//!   itself is stopped, the broker resumes and appends the abandoned batches, and is killed
//!   with SIGKILL and restarted before the client wakes up and retries them: only producer
//!   state rebuilt from the log recognises those retries.
//!
//! Also: transactional producers get a fatal error at once, and idle producers' state expires
//! after `producer.id.expiration.ms`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::restart::{ack_count, Script};
use super::versions::{idempotent_batch, produce_to_partition_0, transactional_batch, Conn};
use super::{client_script, python, Weir};
use crate::support::{free_port, wait_until};

/// Partitions of the scripts' topics (`PARTITIONS` in tests/clients/common.py).
const PARTITIONS: i32 = 3;

/// Acknowledgements between two faults.
const BETWEEN_FAULTS: usize = 5_000;

/// Sends `sig` to process `pid` (ours: the broker or the client script).
fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a child process of this test by its pid.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

fn wait_for_more(what: &str, path: &Path, than: usize) -> usize {
    wait_until(what, Duration::from_secs(120), || {
        let n = ack_count(path);
        (n > than).then_some(n)
    })
}

/// Records stored in `topic` (the sum of its partitions' log end offsets).
fn stored(bootstrap: &str, topic: &str) -> i64 {
    let partitions = (0..PARTITIONS)
        .map(|p| {
            list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(p)
                .with_timestamp(-1)
        })
        .collect();
    let r: ListOffsetsResponse = Conn::new(bootstrap).call(
        ApiKey::ListOffsets,
        1,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions)]),
    );
    r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "ListOffsets {topic}-{}", p.partition_index);
            p.offset
        })
        .sum()
}

/// Pauses the broker until the client has timed out a request (its request timeout is 3 s).
fn pause_until_the_client_gives_up(weir: &Weir, events: &Path) {
    let timeouts = ack_count(events);
    signal(weir.pid(), libc::SIGSTOP);
    wait_until(
        "the client to time out a request",
        Duration::from_secs(60),
        || (ack_count(events) > timeouts).then_some(()),
    );
}

/// `script MODE BOOTSTRAP ACKFILE EVENTS` produces 100 000 idempotent records to `topic`
/// through the two faults of the module doc.
fn exactly_once_through_timeouts_and_a_kill_9(script: &str, mode: &str, topic: &str) {
    crate::support::require_program("python3");
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut weir = Weir::start_in(1, port, &data.path().join("cluster"), &[]);
    let acks = data.path().join("acks");
    let events = data.path().join("events");
    let mut producer = Script(
        Command::new("python3")
            .arg(client_script(script))
            .args([
                mode,
                &weir.bootstrap(),
                &acks.display().to_string(),
                &events.display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the producer"),
    );
    let client = producer.0.id();

    // 1. Retries answered from the live producer state.
    wait_for_more("acknowledgements", &acks, BETWEEN_FAULTS);
    pause_until_the_client_gives_up(&weir, &events);
    signal(weir.pid(), libc::SIGCONT);

    // 2. Retries answered from producer state rebuilt after a kill -9.
    let target = ack_count(&acks) + BETWEEN_FAULTS;
    wait_for_more("acknowledgements", &acks, target - 1);
    pause_until_the_client_gives_up(&weir, &events);
    signal(client, libc::SIGSTOP);
    signal(weir.pid(), libc::SIGCONT);
    let acked = ack_count(&acks) as i64;
    let unacknowledged = wait_until(
        "the broker to append the batches the client gave up on",
        Duration::from_secs(60),
        || {
            let n = stored(&weir.bootstrap(), topic) - acked;
            (n > 0).then_some(n)
        },
    );
    weir.kill9();
    weir.restart();
    signal(client, libc::SIGCONT);

    producer.finish(Duration::from_secs(300), &format!("{script} {mode}"));
    eprintln!(
        "{script}: {} request timeouts; at the kill {acked} records acknowledged and \
         {unacknowledged} more stored",
        ack_count(&events)
    );
    let out = python(
        script,
        &[
            "verify-idempotent",
            &weir.bootstrap(),
            &acks.display().to_string(),
        ],
        Duration::from_secs(120),
    );
    assert!(
        out.contains("100000 records stored exactly once, in order per partition"),
        "no exactly-once check in\n{out}"
    );
}

#[test]
fn kafka_python_default_producer_stores_100k_records_exactly_once_through_timeouts_and_a_kill_9() {
    exactly_once_through_timeouts_and_a_kill_9(
        "kafka_python_client.py",
        "idempotent-faults",
        "kp-idempotent-faults",
    );
}

#[test]
fn confluent_kafka_idempotent_producer_stores_100k_records_exactly_once_through_timeouts_and_a_kill_9(
) {
    exactly_once_through_timeouts_and_a_kill_9(
        "confluent_kafka_client.py",
        "idempotent",
        "idempotent",
    );
}

/// Transactions are out of scope: librdkafka, kafka-python and aiokafka transactional
/// producers fail at once with a fatal error naming the reason, instead of retrying
/// FindCoordinator until `init_transactions` times out.
#[test]
fn transactional_producers_get_a_fatal_error_at_once() {
    let weir = Weir::start(1);
    for (script, client) in [
        ("confluent_kafka_client.py", "confluent-kafka"),
        ("kafka_python_client.py", "kafka-python"),
        ("aiokafka_client.py", "aiokafka"),
    ] {
        let out = python(
            script,
            &["transactional", &weir.bootstrap()],
            Duration::from_secs(90),
        );
        assert!(
            out.contains(&format!("OK {client} transactional producer refused")),
            "{client}: no refusal in\n{out}"
        );
    }
}

/// InitProducerId v4 without a transactional id, carrying `current` (id, epoch) as KIP-360
/// clients do when they reset: (error code, producer id, epoch).
fn init_producer_id_from(bootstrap: &str, current: (i64, i16)) -> (i16, i64, i16) {
    let r: InitProducerIdResponse = Conn::new(bootstrap).call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(current.0))
            .with_producer_epoch(current.1),
    );
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// A fresh producer id (epoch 0).
fn init_producer_id(bootstrap: &str) -> i64 {
    let (error, id, epoch) = init_producer_id_from(bootstrap, (-1, -1));
    assert_eq!((error, epoch), (0, 0));
    id
}

/// KIP-360: an idempotent producer resetting its sequences sends its current id and epoch;
/// without a transactional id Kafka "blindly accepts" and hands out a new id at epoch 0. An id
/// without an epoch (or the reverse) is INVALID_REQUEST.
#[test]
fn a_kip_360_reset_gets_a_fresh_producer_id_and_a_half_given_id_is_invalid() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    let first = init_producer_id(&b);
    let (error, reset, epoch) = init_producer_id_from(&b, (first, 3));
    assert_eq!((error, epoch), (0, 0));
    assert!(reset > first, "reset gave {reset} after {first}");
    assert_eq!(
        init_producer_id_from(&b, (first, -1)).0,
        42,
        "INVALID_REQUEST"
    );
    assert_eq!(init_producer_id_from(&b, (-1, 0)).0, 42, "INVALID_REQUEST");
}

/// Producer ids come from blocks claimed in `/latest_producer_id_block`: a broker restarted
/// after kill -9 never hands out an id again (the new producer's records would be taken for
/// duplicates of the old one's).
#[test]
fn producer_ids_are_never_reused_across_a_kill_9_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_in(1, 0, data.path(), &[]);
    let before: Vec<i64> = (0..3)
        .map(|_| init_producer_id(&weir.bootstrap()))
        .collect();
    assert!(before.windows(2).all(|w| w[0] < w[1]), "{before:?}");
    weir.kill9();
    weir.restart();
    let after = init_producer_id(&weir.bootstrap());
    assert!(
        after > before[2],
        "id {after} after the restart, {before:?} before"
    );
}

/// Kafka refuses transactional records from a request without an authorized transactional
/// id; weir authorizes none (it could never write their commit markers), and stores nothing.
#[test]
fn transactional_batches_are_refused_and_not_stored() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    super::rdkafka_client::create_topic(&b, "txn-batch", 1);
    let mut c = Conn::new(&b);
    assert_eq!(
        produce_to_partition_0(&mut c, 9, "txn-batch", transactional_batch(77, 0)).0,
        53,
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    );
    assert_eq!(
        produce_to_partition_0(&mut c, 9, "txn-batch", idempotent_batch(77, 0)),
        (0, 0),
        "the refused batch left nothing behind, not even producer state"
    );
}

/// `producer.id.expiration.ms`: while a producer is known, a sequence gap is
/// OUT_OF_ORDER_SEQUENCE_NUMBER; once it has been idle that long its state is dropped and the
/// same batch is accepted as from a new producer (Kafka's rule since KIP-360).
#[test]
fn an_idle_producers_state_expires_after_producer_id_expiration_ms() {
    let data = tempfile::tempdir().unwrap();
    let weir = Weir::start_in(
        1,
        0,
        data.path(),
        &[
            "producer.id.expiration.ms=3000",
            "log.retention.check.interval.ms=200",
        ],
    );
    let b = weir.bootstrap();
    super::rdkafka_client::create_topic(&b, "expiry", 1);
    let mut c = Conn::new(&b);
    let pid = 4242;
    let mut produce = |sequence: i32| {
        produce_to_partition_0(&mut c, 9, "expiry", idempotent_batch(pid, sequence)).0
    };
    assert_eq!(produce(0), 0);
    let last_append = Instant::now();
    assert_eq!(produce(7), 45, "a gap from a known producer");
    wait_until(
        "the producer's state to expire",
        Duration::from_secs(60),
        || (produce(7) == 0).then_some(()),
    );
    assert!(
        last_append.elapsed() >= Duration::from_millis(2_900),
        "expired after {:?}, before producer.id.expiration.ms",
        last_append.elapsed()
    );
    assert_eq!(produce(8), 0, "the next batch continues the new sequence");
    assert_eq!(produce(10), 45, "and the state is tracked again");
}
