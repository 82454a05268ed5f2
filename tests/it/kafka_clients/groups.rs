//! Consumer groups end to end: kcat's balanced consumer, confluent-kafka members sharing a
//! topic across a rebalance, more members than partitions, a SIGKILLed member process on a
//! 3-broker cluster, static membership, kafka-python and aiokafka group consumers with
//! commits, committed offsets across a kill -9 restart, `offsets.retention.minutes`, the
//! AdminClient's group operations (script: tests/clients/groups_client.py), and odd group
//! requests over a raw connection.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::versions::Conn;
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

/// The incremental (cooperative) rebalance librdkafka runs over the classic protocol: two
/// rebalances, members keep what they keep and go on consuming it.
#[test]
fn cooperative_sticky_members_rebalance_incrementally_and_every_partition_is_owned_once() {
    let (weir, _data) = start();
    let out = python(
        SCRIPT,
        &["share", &weir.bootstrap(), "cooperative-sticky"],
        LIMIT,
    );
    expect(
        &out,
        &[
            "OK two members own two partitions each",
            "OK rebalance after a third member: every partition owned once",
            "OK no record consumed twice across the rebalance (cooperative-sticky)",
        ],
    );
}

/// Seed 17.4 (and KIP-394: the third member first gets MEMBER_ID_REQUIRED).
#[test]
fn with_more_consumers_than_partitions_the_extra_member_stays_idle_and_the_group_stable() {
    let (weir, _data) = start();
    let out = python(SCRIPT, &["idle", &weir.bootstrap()], LIMIT);
    expect(
        &out,
        &[
            "OK KIP-394: c3 got MEMBER_ID_REQUIRED",
            "OK three members on two partitions",
            "OK the idle member stays idle and the group stays stable",
        ],
    );
}

/// On a 3-broker cluster (the group's coordinator and the partitions' leaders on different
/// brokers): a member process killed with SIGKILL never leaves the group; its partitions move
/// when its session (6 s) times out, and the survivor resumes them from the last commits.
#[test]
fn a_sigkilled_member_process_loses_its_partitions_after_its_session_and_they_resume_from_commits()
{
    let data = tempfile::tempdir().expect("temp dir");
    let weir = Weir::start_in(3, 0, data.path(), FAST_GROUPS);
    let out = python(SCRIPT, &["kill_member", &weir.bootstrap()], LIMIT);
    expect(
        &out,
        &[
            "OK two member processes own two partitions each",
            "moved to the survivor",
            "OK the survivor resumed from the last commits: no gap",
        ],
    );
}

/// KIP-345: a restarted static member gets its partitions back without a rebalance.
#[test]
fn a_static_member_restarting_within_its_session_keeps_its_partitions_without_a_rebalance() {
    let (weir, _data) = start();
    let out = python(SCRIPT, &["static", &weir.bootstrap()], LIMIT);
    expect(
        &out,
        &[
            "OK s1 restarted within its session and got",
            "OK s1 stayed away: its partitions moved to s2",
        ],
    );
}

/// `offsets.retention.minutes` (its smallest value, 1): offsets of empty groups expire, the
/// groups disappear, and a restart does not bring them back (the expiry wrote tombstones).
#[test]
fn offsets_of_empty_groups_expire_after_offsets_retention_minutes_and_stay_expired() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut weir = Weir::start_in(
        1,
        0,
        data.path(),
        &[
            "group.initial.rebalance.delay.ms=0",
            "offsets.retention.minutes=1",
            "offsets.retention.check.interval.ms=1000",
        ],
    );
    let out = python(
        SCRIPT,
        &["retention", &weir.bootstrap()],
        Duration::from_secs(240),
    );
    expect(&out, &["OK both groups expired after"]);
    weir.restart();
    python(SCRIPT, &["retention_gone", &weir.bootstrap()], LIMIT);
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
    let mut c = Conn::new(&b);
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
        let mut resp = c.raw(
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
    let mut resp = c.raw(ApiKey::OffsetFetch, 0, &body);
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
    let mut c = Conn::new(&weir.bootstrap());
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

/// Several clients asking for a topic that does not exist yet race to auto-create it: the
/// ones whose creation finds it already being created are told LEADER_NOT_AVAILABLE (retry),
/// never UNKNOWN_TOPIC_OR_PARTITION, which makes librdkafka drop the topic's partitions.
#[test]
fn concurrent_auto_creations_of_one_topic_answer_leader_not_available_until_it_is_known() {
    let data = tempfile::tempdir().expect("temp dir");
    // Many partitions: the first creation takes long enough for the others to overlap it.
    let weir = Weir::start_in(1, 0, data.path(), &["num.partitions=400"]);
    let bootstrap = weir.bootstrap();
    let request = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(StrBytes::from_static_str("racing"))))]))
        .with_allow_auto_topic_creation(true);
    let askers: Vec<_> = (0..4)
        .map(|_| {
            let (bootstrap, request) = (bootstrap.clone(), request.clone());
            std::thread::spawn(move || {
                let mut c = Conn::new(&bootstrap);
                let r: MetadataResponse = c.call(ApiKey::Metadata, 9, &request);
                (r.topics[0].error_code, r.topics[0].partitions.len())
            })
        })
        .collect();
    for asker in askers {
        let (code, partitions) = asker.join().unwrap();
        assert!(
            (code == 0 && partitions == 400)
                || (code == ResponseError::LeaderNotAvailable.code() && partitions == 0),
            "answered code {code} with {partitions} partitions"
        );
    }
}

/// DescribeGroups shows each member's own address the way Kafka writes it (`/` and the IP):
/// here a client bound to 127.0.0.2 on loopback, where weir once wrote `/127.0.0.1` for all.
#[test]
fn describe_groups_shows_the_address_each_member_connected_from() {
    use join_group_request::JoinGroupRequestProtocol;
    let (weir, _data) = start();
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let mut c = Conn::from_source([127, 0, 0, 2].into(), &weir.bootstrap());
    let find = FindCoordinatorRequest::default().with_key(s("from-afar"));
    crate::support::wait_until("a coordinator", Duration::from_secs(30), || {
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 1, &find);
        (r.error_code == 0).then_some(())
    });
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("from-afar")))
            .with_member_id(s(member))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0"))])
    };
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join(""));
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join(r.member_id.as_str()));
    assert_eq!(r.error_code, 0);
    let r: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        2,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("from-afar"))]),
    );
    let members = &r.groups[0].members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].client_host.as_str(), "/127.0.0.2");
}

/// Odd group requests get Kafka's error codes, a garbage subscription and assignment go
/// through a whole rebalance, and the broker keeps serving a real group afterwards.
#[test]
fn odd_group_requests_get_kafka_errors_and_the_broker_keeps_serving_groups() {
    use join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{offset_commit_request as oc, sync_group_request as sg};
    let (weir, _data) = start();
    let b = weir.bootstrap();
    super::rdkafka_client::create_topic(&b, "odd", 1);
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let join = |group: &str, member: &str, session: i32, protocols: &[(&str, &[u8])]| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_session_timeout_ms(session)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(
                protocols
                    .iter()
                    .map(|(name, meta)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(s(name))
                            .with_metadata(bytes::Bytes::copy_from_slice(meta))
                    })
                    .collect(),
            )
    };
    let mut c = Conn::new(&b);
    // The coordinator exists once FindCoordinator has created `__consumer_offsets`.
    let find = FindCoordinatorRequest::default().with_key(s("odd-group"));
    crate::support::wait_until("a coordinator", Duration::from_secs(30), || {
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 1, &find);
        (r.error_code == 0).then_some(())
    });
    let garbage: &[u8] = &[0xff, 0x00, 0x13, 0x37];
    let mut join_code = |req: &JoinGroupRequest| -> (i16, String, i32) {
        let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, req);
        (r.error_code, r.member_id.to_string(), r.generation_id)
    };
    assert_eq!(
        join_code(&join("", "", 10_000, &[("range", garbage)])).0,
        24
    );
    assert_eq!(
        join_code(&join("odd-group", "", 1, &[("range", garbage)])).0,
        26
    );
    assert_eq!(join_code(&join("odd-group", "", 10_000, &[])).0, 23);
    assert_eq!(
        join_code(&join("odd-group", "nobody", 10_000, &[("range", garbage)])).0,
        25,
        "UNKNOWN_MEMBER_ID for a made-up member id"
    );
    // KIP-394, then a one-member generation with an unparseable subscription.
    let (code, member, _) = join_code(&join("odd-group", "", 10_000, &[("range", garbage)]));
    assert_eq!(code, 79, "MEMBER_ID_REQUIRED");
    let (code, _, generation) =
        join_code(&join("odd-group", &member, 10_000, &[("range", garbage)]));
    assert_eq!((code, generation), (0, 1));
    let r: SyncGroupResponse = c.call(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(s("odd-group")))
            .with_generation_id(1)
            .with_member_id(s(&member))
            .with_assignments(vec![
                sg::SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(bytes::Bytes::from_static(b"\x00\xff")),
                sg::SyncGroupRequestAssignment::default()
                    .with_member_id(s("not-a-member"))
                    .with_assignment(bytes::Bytes::from_static(b"x")),
            ]),
    );
    assert_eq!((r.error_code, r.assignment.as_ref()), (0, &b"\x00\xff"[..]));
    let commit = |partition: i32, metadata: String| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("odd-group")))
            .with_generation_id_or_member_epoch(1)
            .with_member_id(s(&member))
            .with_topics(vec![oc::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("odd")))
                .with_partitions(vec![oc::OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(1)
                    .with_committed_metadata(Some(s(&metadata)))])])
    };
    let mut commit_code = |req: &OffsetCommitRequest| -> i16 {
        let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, req);
        r.topics[0].partitions[0].error_code
    };
    assert_eq!(
        commit_code(&commit(0, "m".repeat(5000))),
        12,
        "OFFSET_METADATA_TOO_LARGE"
    );
    assert_eq!(
        commit_code(&commit(-1, String::new())),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(commit_code(&commit(0, String::new())), 0);
    let r: HeartbeatResponse = c.call(
        ApiKey::Heartbeat,
        3,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(s("no-such-group")))
            .with_generation_id(1)
            .with_member_id(s("x")),
    );
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    let many: Vec<GroupId> = (0..2000).map(|i| GroupId(s(&format!("g{i}")))).collect();
    let r: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(many),
    );
    assert_eq!(r.groups.len(), 2000);
    // The odd group is described as Kafka would, and a real group still works.
    let r: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("odd-group"))]),
    );
    assert_eq!(r.groups[0].group_state.as_str(), "Stable");
    kcat_produce(&b, "odd", "after\n");
    assert_eq!(kcat_group_consume(&b, "odd-after", "odd"), ["after"]);
}
