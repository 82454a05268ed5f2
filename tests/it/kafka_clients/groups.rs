//! Consumer groups end to end: kcat's balanced consumer, confluent-kafka members sharing a
//! topic across a rebalance, kafka-python and aiokafka group consumers with commits,
//! committed offsets across a kill -9 restart, and the AdminClient's group operations
//! (script: tests/clients/groups_client.py).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{python, run_with_deadline, Weir};
use crate::support::require_program;

const LIMIT: Duration = Duration::from_secs(90);
const SCRIPT: &str = "groups_client.py";
/// Fast first rebalances: an empty group does not wait for more members.
const FAST_GROUPS: &[&str] = &["group.initial.rebalance.delay.ms=0"];

fn start() -> (Weir, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start_in(1, 0, data.path(), FAST_GROUPS);
    (weir, data)
}

fn expect(out: &str, checks: &[&str]) {
    for check in checks {
        assert!(out.contains(check), "no `{check}` in\n{out}");
    }
}

fn kcat_produce(bootstrap: &str, topic: &str, lines: &str) {
    require_program("kcat");
    let mut child = Command::new("kcat")
        .args(["-b", bootstrap, "-P", "-t", topic])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start kcat");
    child
        .stdin
        .take()
        .expect("kcat stdin")
        .write_all(lines.as_bytes())
        .expect("write to kcat");
    assert!(child.wait().expect("kcat").success(), "kcat -P failed");
}

/// `kcat -G group topic` until the end of every assigned partition, one value per line.
fn kcat_group_consume(bootstrap: &str, group: &str, topic: &str) -> Vec<String> {
    let out = run_with_deadline(
        Command::new("kcat").args([
            "-b",
            bootstrap,
            "-G",
            group,
            topic,
            "-e",
            "-q",
            "-X",
            "session.timeout.ms=6000",
            // Not `-o beginning`: kcat would force that offset over the committed one.
            "-X",
            "auto.offset.reset=earliest",
        ]),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "kcat -G failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut values: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    values.sort();
    values
}

#[test]
fn kcat_balanced_consumer_consumes_records_and_resumes_from_its_commit() {
    let (weir, _data) = start();
    let bootstrap = weir.bootstrap();
    kcat_produce(&bootstrap, "kcat-group", "a\nb\nc\n");
    assert_eq!(
        kcat_group_consume(&bootstrap, "kcat-g", "kcat-group"),
        ["a", "b", "c"]
    );
    // The group committed its position on close: a new run reads only what came after.
    kcat_produce(&bootstrap, "kcat-group", "d\n");
    assert_eq!(
        kcat_group_consume(&bootstrap, "kcat-g", "kcat-group"),
        ["d"]
    );
}

#[test]
fn confluent_kafka_members_share_partitions_and_rebalance_without_duplicates() {
    let (weir, _data) = start();
    let out = python(SCRIPT, &["share", &weir.bootstrap()], LIMIT);
    expect(
        &out,
        &[
            "OK two members own two partitions each",
            "OK rebalance after a third member: every partition owned once",
            "OK no record consumed twice across the rebalance",
        ],
    );
}

#[test]
fn kafka_python_and_aiokafka_group_consumers_commit_and_resume() {
    let (weir, _data) = start();
    let out = python(SCRIPT, &["kafka_python", &weir.bootstrap()], LIMIT);
    expect(
        &out,
        &["OK kafka-python group consumer resumed from the committed offsets"],
    );
    let out = python(SCRIPT, &["aiokafka", &weir.bootstrap()], LIMIT);
    expect(
        &out,
        &["OK aiokafka group consumer resumed from the committed offsets"],
    );
}

#[test]
fn committed_offsets_survive_a_kill_9_restart() {
    let (mut weir, _data) = start();
    let out = python(SCRIPT, &["commit", &weir.bootstrap()], LIMIT);
    expect(&out, &["OK committed"]);
    weir.kill9();
    weir.restart();
    let out = python(SCRIPT, &["committed", &weir.bootstrap()], LIMIT);
    expect(&out, &["OK committed offsets after restart"]);
}

#[test]
fn admin_client_lists_describes_alters_and_deletes_groups() {
    let (weir, _data) = start();
    let out = python(SCRIPT, &["admin", &weir.bootstrap()], LIMIT);
    expect(
        &out,
        &[
            "OK list consumer groups",
            "OK describe consumer groups",
            "OK list consumer group offsets",
            "OK alter consumer group offsets",
            "OK delete consumer groups",
        ],
    );
}

/// A raw Kafka connection for the versions no client here sends.
struct Raw {
    stream: std::net::TcpStream,
    next: i32,
}

impl Raw {
    fn new(bootstrap: &str) -> Self {
        let stream = std::net::TcpStream::connect(bootstrap).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("read timeout");
        Raw { stream, next: 1 }
    }

    /// Sends `body` as `api` v`version`; returns the response body after its header.
    fn send(&mut self, api: ApiKey, version: i16, body: &[u8]) -> Bytes {
        use std::io::Read;
        let id = self.next;
        self.next += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("groups")))
            .encode(&mut buf, api.request_header_version(version))
            .expect("encode header");
        buf.extend_from_slice(body);
        let mut out = (buf.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        self.stream.write_all(&out).expect("send");
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: no answer ({e})"));
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).expect("response");
        let mut frame = Bytes::from(frame);
        let header_version = if version < api.valid_versions().min {
            0
        } else {
            api.response_header_version(version)
        };
        let header = ResponseHeader::decode(&mut frame, header_version).expect("header");
        assert_eq!(header.correlation_id, id, "{api:?} v{version}");
        frame
    }

    fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, body: &Q) -> R {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
        let mut frame = self.send(api, version, &buf);
        let r =
            R::decode(&mut frame, version).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
        assert!(frame.is_empty(), "{api:?} v{version}: trailing bytes");
        r
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

/// OffsetCommit v0/v1 body for one partition of `topic`.
fn legacy_commit(version: i16, topic: &str, offset: i64, metadata: &str) -> BytesMut {
    let mut b = BytesMut::new();
    put_str(&mut b, "legacy-group");
    if version >= 1 {
        b.put_i32(-1);
        put_str(&mut b, "");
    }
    b.put_i32(1);
    put_str(&mut b, topic);
    b.put_i32(1);
    b.put_i32(0);
    b.put_i64(offset);
    if version >= 1 {
        b.put_i64(-1);
    }
    put_str(&mut b, metadata);
    b
}

#[test]
fn legacy_offset_commit_v0_v1_and_offset_fetch_v0_round_trip_and_every_version_answers() {
    let (weir, _data) = start();
    let b = weir.bootstrap();
    super::rdkafka_client::create_topic(&b, "legacy", 1);
    let mut c = Raw::new(&b);
    let find =
        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("legacy-group"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 1, &find);
        if r.error_code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no coordinator: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for v in 0..=3 {
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &find);
        assert_eq!(r.error_code, 0, "FindCoordinator v{v}");
    }
    let r: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![StrBytes::from_static_str("legacy-group")]),
    );
    assert_eq!(r.coordinators[0].error_code, 0, "FindCoordinator v4");

    for (v, offset) in [(0, 5), (1, 7)] {
        let mut resp = c.send(
            ApiKey::OffsetCommit,
            v,
            &legacy_commit(v, "legacy", offset, "m"),
        );
        assert_eq!(resp.get_i32(), 1);
        assert_eq!(resp.get_i16(), 6);
        resp.advance(6);
        assert_eq!(
            (resp.get_i32(), resp.get_i32(), resp.get_i16()),
            (1, 0, 0),
            "OffsetCommit v{v}"
        );
        assert!(resp.is_empty());
    }
    let mut body = BytesMut::new();
    put_str(&mut body, "legacy-group");
    body.put_i32(1);
    put_str(&mut body, "legacy");
    body.put_i32(1);
    body.put_i32(0);
    let mut resp = c.send(ApiKey::OffsetFetch, 0, &body);
    assert_eq!(resp.get_i32(), 1);
    resp.advance(2 + 6);
    assert_eq!(resp.get_i32(), 1);
    assert_eq!(resp.get_i32(), 0);
    assert_eq!(resp.get_i64(), 7, "OffsetFetch v0 returns the v1 commit");
    assert_eq!(resp.get_i16(), 1);
    assert_eq!(resp.get_u8(), b'm');
    assert_eq!(resp.get_i16(), 0);

    use kafka_protocol::messages::{offset_commit_request as oc, offset_fetch_request as of};
    for v in 2..=8 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("legacy-group")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![oc::OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("legacy")))
                .with_partitions(vec![oc::OffsetCommitRequestPartition::default()
                    .with_committed_offset(100 + i64::from(v))])]);
        let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, v, &req);
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    }
    for v in 1..=8 {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![of::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("legacy-group")))
                .with_topics(Some(vec![of::OffsetFetchRequestTopics::default()
                    .with_name(TopicName(StrBytes::from_static_str("legacy")))
                    .with_partition_indexes(vec![0])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("legacy-group")))
                .with_topics(Some(vec![of::OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("legacy")))
                    .with_partition_indexes(vec![0])]))
        };
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req);
        let offset = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 108, "OffsetFetch v{v}");
    }
    for v in 0..=4 {
        let r: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &ListGroupsRequest::default());
        assert_eq!(r.error_code, 0, "ListGroups v{v}");
    }
    for v in 0..=5 {
        let r: DescribeGroupsResponse = c.call(
            ApiKey::DescribeGroups,
            v,
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("legacy-group"))]),
        );
        assert_eq!(r.groups[0].error_code, 0, "DescribeGroups v{v}");
    }
}

#[test]
fn metadata_auto_creation_of_the_offsets_topic_uses_the_offsets_settings() {
    let (weir, _data) = start();
    let mut c = Raw::new(&weir.bootstrap());
    let request = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(StrBytes::from_static_str(
            "__consumer_offsets",
        ))))]))
        .with_allow_auto_topic_creation(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r: MetadataResponse = c.call(ApiKey::Metadata, 4, &request);
        if r.topics[0].error_code == 0 {
            assert!(r.topics[0].is_internal);
            assert_eq!(
                r.topics[0].partitions.len(),
                50,
                "offsets.topic.num.partitions"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not created: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
