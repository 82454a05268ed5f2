//! The records of the internal topic `__consumer_offsets`, encoded exactly as Kafka writes
//! them so that Kafka's own tools (`kafka-console-consumer --formatter
//! OffsetsMessageFormatter`, `kafka-dump-log --offsets-decoder`) could read weir's log.
//!
//! Every key and value starts with a big-endian `int16` version, then the fields of that
//! version in the order of Kafka's schema files
//! (`group-coordinator/src/main/resources/common/message/*.json`):
//!
//! | record | version | fields |
//! |---|---|---|
//! | `OffsetCommitKey` | 0, 1 | group: string, topic: string, partition: int32 |
//! | `GroupMetadataKey` | 2 | group: string |
//! | `OffsetCommitValue` | 0–4 | offset: int64, leader_epoch: int32 (v3+), metadata: string, commit_timestamp: int64, expire_timestamp: int64 (v1 only) |
//! | `GroupMetadataValue` | 0–4 | protocol_type: string, generation: int32, protocol: nullable string, leader: nullable string, current_state_timestamp: int64 (v2+), members: [member_id, group_instance_id (v3+, nullable), client_id, client_host, rebalance_timeout (v1+), session_timeout, subscription: bytes, assignment: bytes] |
//!
//! Strings are an `int16` length then UTF-8 (length −1 for null), bytes an `int32` length,
//! arrays an `int32` count. Version 4 of both values is Kafka's first "flexible" version:
//! compact (unsigned-varint, length + 1) strings, bytes and arrays, and a tagged-field section
//! after every struct; weir reads and writes it, but writes v3 as Kafka 3.x does.
//! A record with a key and no value (a tombstone) deletes the offset or group.

use bytes::{BufMut, Bytes, BytesMut};

/// `__consumer_offsets`: the internal topic holding committed offsets and group metadata.
pub const GROUP_METADATA_TOPIC_NAME: &str = "__consumer_offsets";

/// Key version Kafka 3.x writes for offset commits (0 is the pre-0.10 one; both decode).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version that marks a group metadata record.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// Value version Kafka 3.x writes for an offset commit without an explicit expiry.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Value version Kafka 3.x writes when a commit carries an explicit retention (v1..v4
/// OffsetCommit requests), since only v1 stores `expire_timestamp`.
pub const OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
/// Group metadata value version Kafka 3.x writes (static membership needs v3).
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// Why a `__consumer_offsets` record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: needed {needed} more bytes at position {at}")]
    Truncated { at: usize, needed: usize },
    #[error("unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("invalid UTF-8 in a string field")]
    InvalidUtf8,
    #[error("negative length {0} for a non-nullable field")]
    NegativeLength(i64),
    #[error("null where the schema does not allow it")]
    UnexpectedNull,
    #[error("malformed varint")]
    BadVarint,
}

/// The key of a `__consumer_offsets` record: which kind of record it is and what it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A committed offset of `group` for `topic`-`partition` (key versions 0 and 1).
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    /// The membership and generation of `group` (key version 2).
    GroupMetadata { group: String },
}

impl RecordKey {
    /// Encodes with the key version Kafka 3.x writes (1 for offsets, 2 for groups).
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new(false);
        match self {
            RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            } => {
                w.i16(OFFSET_COMMIT_KEY_VERSION);
                w.string(group);
                w.string(topic);
                w.i32(*partition);
            }
            RecordKey::GroupMetadata { group } => {
                w.i16(GROUP_METADATA_KEY_VERSION);
                w.string(group);
            }
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(bytes, false);
        let version = r.i16()?;
        match version {
            0 | 1 => Ok(RecordKey::OffsetCommit {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            }),
            2 => Ok(RecordKey::GroupMetadata { group: r.string()? }),
            version => Err(RecordError::UnknownVersion {
                what: "key",
                version,
            }),
        }
    }

    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::OffsetCommit { group, .. } | RecordKey::GroupMetadata { group } => group,
        }
    }
}

/// `OffsetCommitValue`: one committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// Leader epoch of the committed record (v3+); −1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    /// When the commit was made (ms since the epoch); retention counts from it.
    pub commit_timestamp: i64,
    /// Explicit expiry of old commits that carried a retention time (v1 only); −1 if none.
    pub expire_timestamp: i64,
}

impl OffsetCommitValue {
    pub fn encode(&self, version: i16) -> Result<Bytes, RecordError> {
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "offset commit value",
                version,
            });
        }
        let mut w = Writer::new(version >= 4);
        w.i16(version);
        w.i64(self.offset);
        if version >= 3 {
            w.i32(self.leader_epoch);
        }
        w.string(&self.metadata);
        w.i64(self.commit_timestamp);
        if version == 1 {
            w.i64(self.expire_timestamp);
        }
        w.tagged_fields();
        Ok(w.finish())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(bytes, false);
        let version = r.i16()?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "offset commit value",
                version,
            });
        }
        r.flexible = version >= 4;
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.string()?;
        let commit_timestamp = r.i64()?;
        let expire_timestamp = if version == 1 { r.i64()? } else { -1 };
        r.skip_tagged_fields()?;
        Ok(OffsetCommitValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
            expire_timestamp,
        })
    }
}

/// One member inside `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    /// `group.instance.id` of a static member (v3+).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// v1+; version 0 stores none, so decoding v0 copies the session timeout, as Kafka does.
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// `GroupMetadataValue`: a group's generation, selected protocol, leader and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// Empty for a group that has never had a member.
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (ms; v2+); −1 when unknown.
    pub current_state_timestamp: i64,
    pub members: Vec<MemberMetadataValue>,
}

impl GroupMetadataValue {
    pub fn encode(&self, version: i16) -> Result<Bytes, RecordError> {
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "group metadata value",
                version,
            });
        }
        let mut w = Writer::new(version >= 4);
        w.i16(version);
        w.string(&self.protocol_type);
        w.i32(self.generation);
        w.nullable_string(self.protocol.as_deref());
        w.nullable_string(self.leader.as_deref());
        if version >= 2 {
            w.i64(self.current_state_timestamp);
        }
        w.array_len(self.members.len());
        for m in &self.members {
            w.string(&m.member_id);
            if version >= 3 {
                w.nullable_string(m.group_instance_id.as_deref());
            }
            w.string(&m.client_id);
            w.string(&m.client_host);
            if version >= 1 {
                w.i32(m.rebalance_timeout);
            }
            w.i32(m.session_timeout);
            w.bytes(&m.subscription);
            w.bytes(&m.assignment);
            w.tagged_fields();
        }
        w.tagged_fields();
        Ok(w.finish())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(bytes, false);
        let version = r.i16()?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "group metadata value",
                version,
            });
        }
        r.flexible = version >= 4;
        let protocol_type = r.string()?;
        let generation = r.i32()?;
        let protocol = r.nullable_string()?;
        let leader = r.nullable_string()?;
        let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        let count = r.array_len()?;
        let mut members = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let member_id = r.string()?;
            let group_instance_id = if version >= 3 {
                r.nullable_string()?
            } else {
                None
            };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let rebalance_timeout = if version >= 1 { Some(r.i32()?) } else { None };
            let session_timeout = r.i32()?;
            let subscription = r.bytes()?;
            let assignment = r.bytes()?;
            r.skip_tagged_fields()?;
            members.push(MemberMetadataValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout: rebalance_timeout.unwrap_or(session_timeout),
                session_timeout,
                subscription,
                assignment,
            });
        }
        r.skip_tagged_fields()?;
        Ok(GroupMetadataValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

/// Kafka's primitive encodings, classic or flexible (compact) per the record version.
struct Writer {
    buf: BytesMut,
    flexible: bool,
}

impl Writer {
    fn new(flexible: bool) -> Self {
        Writer {
            buf: BytesMut::with_capacity(64),
            flexible,
        }
    }
    fn finish(self) -> Bytes {
        self.buf.freeze()
    }
    fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }
    fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }
    fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }
    fn string(&mut self, s: &str) {
        self.nullable_string(Some(s));
    }
    fn nullable_string(&mut self, s: Option<&str>) {
        match (s, self.flexible) {
            (None, false) => self.i16(-1),
            (None, true) => self.uvarint(0),
            (Some(s), false) => {
                // Kafka's int16 length caps strings at 32767 bytes; longer input is clamped
                // at a char boundary rather than writing a length that lies.
                let s = truncate_utf8(s, i16::MAX as usize);
                self.i16(s.len() as i16);
                self.buf.put_slice(s.as_bytes());
            }
            (Some(s), true) => {
                self.uvarint(s.len() as u64 + 1);
                self.buf.put_slice(s.as_bytes());
            }
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        if self.flexible {
            self.uvarint(b.len() as u64 + 1);
        } else {
            self.i32(b.len() as i32);
        }
        self.buf.put_slice(b);
    }
    fn array_len(&mut self, n: usize) {
        if self.flexible {
            self.uvarint(n as u64 + 1);
        } else {
            self.i32(n as i32);
        }
    }
    /// An empty tagged-field section (flexible versions only).
    fn tagged_fields(&mut self) {
        if self.flexible {
            self.uvarint(0);
        }
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], flexible: bool) -> Self {
        Reader {
            buf,
            pos: 0,
            flexible,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(RecordError::Truncated {
                at: self.pos,
                needed: n - available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError::BadVarint)
    }
    /// Length of a string/bytes/array field; None for null.
    fn length(&mut self, int32: bool) -> Result<Option<usize>, RecordError> {
        if self.flexible {
            let n = self.uvarint()?;
            if n == 0 {
                Ok(None)
            } else {
                usize::try_from(n - 1)
                    .map(Some)
                    .map_err(|_| RecordError::NegativeLength(-1))
            }
        } else {
            let n = if int32 {
                i64::from(self.i32()?)
            } else {
                i64::from(self.i16()?)
            };
            match n {
                -1 => Ok(None),
                n if n < 0 => Err(RecordError::NegativeLength(n)),
                n => Ok(Some(n as usize)),
            }
        }
    }
    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        match self.length(false)? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n)?;
                std::str::from_utf8(b)
                    .map(|s| Some(s.to_owned()))
                    .map_err(|_| RecordError::InvalidUtf8)
            }
        }
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?.ok_or(RecordError::UnexpectedNull)
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        match self.length(true)? {
            None => Err(RecordError::UnexpectedNull),
            Some(n) => Ok(Bytes::copy_from_slice(self.take(n)?)),
        }
    }
    fn array_len(&mut self) -> Result<usize, RecordError> {
        self.length(true)?.ok_or(RecordError::UnexpectedNull)
    }
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            let size = usize::try_from(size).map_err(|_| RecordError::BadVarint)?;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_group(version: i16) -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("c-1".into()),
            current_state_timestamp: if version >= 2 { 1_700_000_000_000 } else { -1 },
            members: vec![
                MemberMetadataValue {
                    member_id: "c-1".into(),
                    group_instance_id: if version >= 3 {
                        Some("i-1".into())
                    } else {
                        None
                    },
                    client_id: "client".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout: if version >= 1 { 60_000 } else { 10_000 },
                    session_timeout: 10_000,
                    subscription: Bytes::from_static(b"\x00\x01sub"),
                    assignment: Bytes::from_static(b"assign"),
                },
                MemberMetadataValue {
                    member_id: "c-2".into(),
                    group_instance_id: None,
                    client_id: "client".into(),
                    client_host: "/127.0.0.2".into(),
                    rebalance_timeout: if version >= 1 { 30_000 } else { 45_000 },
                    session_timeout: 45_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        }
    }

    #[test]
    fn offset_commit_key_encodes_as_kafka_key_version_1() {
        let key = RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        let bytes = key.encode();
        // int16 version 1, string "g", string "t", int32 3 (OffsetCommitKey.json).
        assert_eq!(
            bytes.as_ref(),
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3][..]
        );
        assert_eq!(RecordKey::decode(&bytes).unwrap(), key);
    }

    #[test]
    fn offset_commit_key_version_0_decodes_like_version_1() {
        let bytes = [0, 0, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 9];
        assert_eq!(
            RecordKey::decode(&bytes).unwrap(),
            RecordKey::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 9
            }
        );
    }

    #[test]
    fn group_metadata_key_encodes_as_kafka_key_version_2() {
        let key = RecordKey::GroupMetadata {
            group: "grp".into(),
        };
        let bytes = key.encode();
        assert_eq!(bytes.as_ref(), &[0, 2, 0, 3, b'g', b'r', b'p'][..]);
        assert_eq!(RecordKey::decode(&bytes).unwrap(), key);
    }

    #[test]
    fn offset_commit_value_v3_matches_kafka_byte_layout() {
        let value = OffsetCommitValue {
            offset: 42,
            leader_epoch: 5,
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: -1,
        };
        let bytes = value.encode(3).unwrap();
        let expected: Vec<u8> = [
            &[0u8, 3][..],          // version 3
            &42i64.to_be_bytes(),   // offset
            &5i32.to_be_bytes(),    // leaderEpoch (v3+)
            &[0, 1, b'm'],          // metadata
            &1000i64.to_be_bytes(), // commitTimestamp
        ]
        .concat();
        assert_eq!(bytes.as_ref(), expected.as_slice());
        assert_eq!(OffsetCommitValue::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn offset_commit_value_v1_carries_expire_timestamp_and_no_leader_epoch() {
        let value = OffsetCommitValue {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 10,
            expire_timestamp: 20,
        };
        let bytes = value.encode(1).unwrap();
        let expected: Vec<u8> = [
            &[0u8, 1][..],
            &1i64.to_be_bytes(),
            &[0, 0],
            &10i64.to_be_bytes(),
            &20i64.to_be_bytes(),
        ]
        .concat();
        assert_eq!(bytes.as_ref(), expected.as_slice());
        assert_eq!(OffsetCommitValue::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn offset_commit_value_round_trips_every_version() {
        for version in 0..=4 {
            let value = OffsetCommitValue {
                offset: 1 << 40,
                leader_epoch: if version >= 3 { 9 } else { -1 },
                metadata: "meta ü".into(),
                commit_timestamp: 1_700_000_000_123,
                expire_timestamp: if version == 1 { 1_800_000_000_000 } else { -1 },
            };
            let bytes = value.encode(version).unwrap();
            assert_eq!(
                OffsetCommitValue::decode(&bytes).unwrap(),
                value,
                "v{version}"
            );
        }
    }

    #[test]
    fn group_metadata_value_v3_matches_kafka_byte_layout() {
        let value = GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: Some("range".into()),
            leader: Some("m".into()),
            current_state_timestamp: 5,
            members: vec![MemberMetadataValue {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "h".into(),
                rebalance_timeout: 300,
                session_timeout: 100,
                subscription: Bytes::from_static(b"S"),
                assignment: Bytes::from_static(b"A"),
            }],
        };
        let bytes = value.encode(3).unwrap();
        let expected: Vec<u8> = [
            &[0u8, 3][..], // version
            &[0, 8],
            b"consumer",         // protocolType
            &1i32.to_be_bytes(), // generation
            &[0, 5],
            b"range",              // protocol
            &[0, 1, b'm'],         // leader
            &5i64.to_be_bytes(),   // currentStateTimestamp
            &1i32.to_be_bytes(),   // members: 1
            &[0, 1, b'm'],         // memberId
            &[0xff, 0xff],         // groupInstanceId: null
            &[0, 1, b'c'],         // clientId
            &[0, 1, b'h'],         // clientHost
            &300i32.to_be_bytes(), // rebalanceTimeout
            &100i32.to_be_bytes(), // sessionTimeout
            &1i32.to_be_bytes(),
            b"S", // subscription
            &1i32.to_be_bytes(),
            b"A", // assignment
        ]
        .concat();
        assert_eq!(bytes.as_ref(), expected.as_slice());
        assert_eq!(GroupMetadataValue::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn group_metadata_value_round_trips_every_version() {
        for version in 0..=4 {
            let value = sample_group(version);
            let bytes = value.encode(version).unwrap();
            assert_eq!(
                GroupMetadataValue::decode(&bytes).unwrap(),
                value,
                "v{version}"
            );
        }
    }

    #[test]
    fn group_metadata_value_v0_takes_rebalance_timeout_from_session_timeout() {
        let mut value = sample_group(0);
        value.members[0].rebalance_timeout = 1;
        let decoded = GroupMetadataValue::decode(&value.encode(0).unwrap()).unwrap();
        assert_eq!(decoded.members[0].rebalance_timeout, 10_000);
    }

    #[test]
    fn empty_group_with_null_protocol_and_leader_round_trips() {
        let value = GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: None,
            leader: None,
            current_state_timestamp: 9,
            members: vec![],
        };
        let bytes = value.encode(3).unwrap();
        assert_eq!(GroupMetadataValue::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn flexible_v4_skips_unknown_tagged_fields() {
        let value = OffsetCommitValue {
            offset: 7,
            leader_epoch: 2,
            metadata: "x".into(),
            commit_timestamp: 3,
            expire_timestamp: -1,
        };
        let mut bytes = value.encode(4).unwrap().to_vec();
        // Replace the empty tagged-field section with one field: tag 0, 2 bytes.
        assert_eq!(bytes.pop(), Some(0));
        bytes.extend_from_slice(&[1, 0, 2, 0xAB, 0xCD]);
        assert_eq!(OffsetCommitValue::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn truncated_and_unknown_records_are_errors_not_panics() {
        assert!(matches!(
            RecordKey::decode(&[0, 1, 0, 5, b'g']),
            Err(RecordError::Truncated { .. })
        ));
        assert!(matches!(
            RecordKey::decode(&[0, 9]),
            Err(RecordError::UnknownVersion { version: 9, .. })
        ));
        assert!(RecordKey::decode(&[]).is_err());
        assert!(OffsetCommitValue::decode(&[0, 3, 1]).is_err());
        assert!(GroupMetadataValue::decode(&[0, 3, 0, 0, 0, 0, 0, 1, 0xff]).is_err());
        // A negative array count must not allocate or loop.
        let mut bad = GroupMetadataValue {
            protocol_type: String::new(),
            generation: 0,
            protocol: None,
            leader: None,
            current_state_timestamp: -1,
            members: vec![],
        }
        .encode(3)
        .unwrap()
        .to_vec();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(GroupMetadataValue::decode(&bad).is_err());
        // A huge array count with no data is a truncation error, not an allocation.
        bad[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            GroupMetadataValue::decode(&bad),
            Err(RecordError::Truncated { .. })
        ));
    }
}
