//! The oldest versions of APIs weir advertises from v0 (as Kafka 3.x does) but which the
//! `kafka-protocol` crate cannot decode: Produce v0–2 and Fetch v0–3 (the old message
//! formats), ListOffsets v0, CreateTopics v0–1, DeleteTopics v0, DescribeConfigs v0,
//! DescribeLogDirs v0, AlterReplicaLogDirs v0 and OffsetForLeaderEpoch v0–1. Each gets a well-formed response at its
//! own version saying UNSUPPORTED_VERSION for every topic or partition it names, so an old
//! client fails with a clear error instead of a dropped connection. The ACL APIs' v0 get
//! SECURITY_DISABLED, as every version does (see `acls`). A small bounds-checked reader and
//! writer for the non-flexible encoding is all that takes.
use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::{finish_frame, CloseConnection, Outcome, PendingResponse};

const UNSUPPORTED: i16 = ResponseError::UnsupportedVersion.code();
const SECURITY_DISABLED: i16 = ResponseError::SecurityDisabled.code();

/// A bounds-checked reader over a request body.
struct Reader {
    buf: Bytes,
}

type ReadResult<T> = Result<T, String>;

impl Reader {
    fn take(&mut self, n: usize) -> ReadResult<Bytes> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated: needed {n} bytes, {} left",
                self.buf.len()
            ));
        }
        Ok(self.buf.split_to(n))
    }
    fn i8(&mut self) -> ReadResult<i8> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> ReadResult<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> ReadResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> ReadResult<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(i64::from_be_bytes(a))
    }
    fn string(&mut self) -> ReadResult<Bytes> {
        let n = self.i16()?;
        if n < 0 {
            return Err("null string where a string is required".into());
        }
        self.take(n as usize)
    }
    fn nullable_string(&mut self) -> ReadResult<Option<Bytes>> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        self.take(n as usize).map(Some)
    }
    fn bytes(&mut self) -> ReadResult<()> {
        let n = self.i32()?;
        if n > 0 {
            self.take(n as usize)?;
        }
        Ok(())
    }
    /// An array length, refused when it cannot fit in what is left (every element takes at
    /// least one byte), so nothing is ever allocated from a forged count.
    fn array_len(&mut self, nullable: bool) -> ReadResult<Option<usize>> {
        let n = self.i32()?;
        if n < 0 {
            return if nullable && n == -1 {
                Ok(None)
            } else {
                Err(format!("invalid array length {n}"))
            };
        }
        if n as usize > self.buf.len() {
            return Err(format!("array of {n} elements in {} bytes", self.buf.len()));
        }
        Ok(Some(n as usize))
    }
    fn array<T>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> ReadResult<T>,
    ) -> ReadResult<Vec<T>> {
        let n = self.array_len(false)?.unwrap_or(0);
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(element(self)?);
        }
        Ok(out)
    }
}

fn put_string(out: &mut BytesMut, s: &[u8]) {
    out.put_i16(s.len() as i16);
    out.put_slice(s);
}

/// Topics with their partition numbers, as the request named them.
type TopicPartitions = Vec<(Bytes, Vec<i32>)>;

/// Answers an old-version request with UNSUPPORTED_VERSION throughout.
pub fn respond(
    api: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<PendingResponse, CloseConnection> {
    let mut r = Reader { buf: frame };
    let parsed = (|| -> ReadResult<(i32, BytesMut)> {
        // Request header v1: api key, version, correlation id, client id.
        r.i16()?;
        r.i16()?;
        let correlation_id = r.i32()?;
        r.nullable_string()?;
        let mut out = BytesMut::with_capacity(128);
        out.put_i32(0);
        out.put_i32(correlation_id);
        match api {
            ApiKey::Produce => {
                let acks = r.i16()?;
                r.i32()?;
                let topics = r.array(|r| {
                    let name = r.string()?;
                    let parts = r.array(|r| {
                        let p = r.i32()?;
                        r.bytes()?;
                        Ok(p)
                    })?;
                    Ok((name, parts))
                })?;
                if acks == 0 {
                    return Err("acks=0 produce with an old message format".into());
                }
                write_topics(&mut out, &topics, |out, p| {
                    out.put_i32(p);
                    out.put_i16(UNSUPPORTED);
                    out.put_i64(-1);
                    if version >= 2 {
                        out.put_i64(-1);
                    }
                });
                if version >= 1 {
                    out.put_i32(0);
                }
            }
            ApiKey::Fetch => {
                r.i32()?;
                r.i32()?;
                r.i32()?;
                if version >= 3 {
                    r.i32()?;
                }
                let topics = r.array(|r| {
                    let name = r.string()?;
                    let parts = r.array(|r| {
                        let p = r.i32()?;
                        r.i64()?;
                        r.i32()?;
                        Ok(p)
                    })?;
                    Ok((name, parts))
                })?;
                if version >= 1 {
                    out.put_i32(0);
                }
                write_topics(&mut out, &topics, |out, p| {
                    out.put_i32(p);
                    out.put_i16(UNSUPPORTED);
                    out.put_i64(-1);
                    out.put_i32(0);
                });
            }
            ApiKey::ListOffsets => {
                r.i32()?;
                let topics = r.array(|r| {
                    let name = r.string()?;
                    let parts = r.array(|r| {
                        let p = r.i32()?;
                        r.i64()?;
                        r.i32()?;
                        Ok(p)
                    })?;
                    Ok((name, parts))
                })?;
                write_topics(&mut out, &topics, |out, p| {
                    out.put_i32(p);
                    out.put_i16(UNSUPPORTED);
                    out.put_i32(0);
                });
            }
            ApiKey::CreateTopics => {
                let names = r.array(|r| {
                    let name = r.string()?;
                    r.i32()?;
                    r.i16()?;
                    r.array(|r| {
                        r.i32()?;
                        r.array(|r| r.i32())
                    })?;
                    r.array(|r| {
                        r.string()?;
                        r.nullable_string()
                    })?;
                    Ok(name)
                })?;
                out.put_i32(names.len() as i32);
                for name in names {
                    put_string(&mut out, &name);
                    out.put_i16(UNSUPPORTED);
                    if version >= 1 {
                        out.put_i16(-1);
                    }
                }
            }
            ApiKey::DeleteTopics => {
                let names = r.array(|r| r.string())?;
                out.put_i32(names.len() as i32);
                for name in names {
                    put_string(&mut out, &name);
                    out.put_i16(UNSUPPORTED);
                }
            }
            ApiKey::DescribeConfigs => {
                let resources = r.array(|r| {
                    let kind = r.i8()?;
                    let name = r.string()?;
                    if let Some(n) = r.array_len(true)? {
                        for _ in 0..n {
                            r.string()?;
                        }
                    }
                    Ok((kind, name))
                })?;
                out.put_i32(0);
                out.put_i32(resources.len() as i32);
                for (kind, name) in resources {
                    out.put_i16(UNSUPPORTED);
                    out.put_i16(-1);
                    out.put_i8(kind);
                    put_string(&mut out, &name);
                    out.put_i32(0);
                }
            }
            ApiKey::DescribeLogDirs => {
                out.put_i32(0);
                out.put_i32(0);
            }
            ApiKey::AlterReplicaLogDirs => {
                let dirs = r.array(|r| {
                    r.string()?;
                    r.array(|r| {
                        let name = r.string()?;
                        let parts = r.array(|r| r.i32())?;
                        Ok((name, parts))
                    })
                })?;
                let topics: TopicPartitions = dirs.into_iter().flatten().collect();
                out.put_i32(0);
                write_topics(&mut out, &topics, |out, p| {
                    out.put_i32(p);
                    out.put_i16(UNSUPPORTED);
                });
            }
            ApiKey::OffsetForLeaderEpoch => {
                let topics = r.array(|r| {
                    let name = r.string()?;
                    let parts = r.array(|r| {
                        let p = r.i32()?;
                        r.i32()?;
                        Ok(p)
                    })?;
                    Ok((name, parts))
                })?;
                write_topics(&mut out, &topics, |out, p| {
                    out.put_i16(UNSUPPORTED);
                    out.put_i32(p);
                    if version >= 1 {
                        out.put_i32(-1);
                    }
                    out.put_i64(-1);
                });
            }
            // The ACL APIs' v0 (no pattern types) get what every version gets from a broker
            // without an authorizer: SECURITY_DISABLED (see `acls`).
            ApiKey::DescribeAcls => {
                out.put_i32(0);
                out.put_i16(SECURITY_DISABLED);
                put_string(&mut out, super::acls::DESCRIBE_MESSAGE.as_bytes());
                out.put_i32(0);
            }
            ApiKey::CreateAcls => {
                let creations = r.array(|r| {
                    r.i8()?;
                    r.string()?;
                    r.string()?;
                    r.string()?;
                    r.i8()?;
                    r.i8()
                })?;
                out.put_i32(0);
                out.put_i32(creations.len() as i32);
                for _ in creations {
                    out.put_i16(SECURITY_DISABLED);
                    put_string(&mut out, super::acls::CHANGE_MESSAGE.as_bytes());
                }
            }
            ApiKey::DeleteAcls => {
                let filters = r.array(|r| {
                    r.i8()?;
                    r.nullable_string()?;
                    r.nullable_string()?;
                    r.nullable_string()?;
                    r.i8()?;
                    r.i8()
                })?;
                out.put_i32(0);
                out.put_i32(filters.len() as i32);
                for _ in filters {
                    out.put_i16(SECURITY_DISABLED);
                    put_string(&mut out, super::acls::CHANGE_MESSAGE.as_bytes());
                    out.put_i32(0);
                }
            }
            other => return Err(format!("{other:?} v{version} has no legacy codec")),
        }
        Ok((correlation_id, out))
    })();
    match parsed {
        Ok((_, out)) => {
            tracing::debug!(api = ?api, version, "answered an old request version with UNSUPPORTED_VERSION");
            let frame = finish_frame(out, Vec::new());
            Ok(futures::future::ready(Outcome::Respond(frame)).boxed())
        }
        Err(reason) => Err(CloseConnection(format!(
            "malformed {api:?} v{version} request: {reason}"
        ))),
    }
}

fn write_topics(
    out: &mut BytesMut,
    topics: &TopicPartitions,
    mut partition: impl FnMut(&mut BytesMut, i32),
) {
    out.put_i32(topics.len() as i32);
    for (name, parts) in topics {
        put_string(out, name);
        out.put_i32(parts.len() as i32);
        for p in parts {
            partition(out, *p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(api: ApiKey, version: i16, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(api as i16);
        b.put_i16(version);
        b.put_i32(77);
        put_string(&mut b, b"legacy-client");
        b.put_slice(body);
        b.freeze()
    }

    async fn answer(api: ApiKey, version: i16, body: &[u8]) -> Bytes {
        let pending = respond(api, version, frame(api, version, body)).expect("answered");
        match pending.await {
            Outcome::Respond(f) => {
                let mut all = BytesMut::new();
                for c in f.chunks {
                    all.put_slice(&c);
                }
                all.freeze()
            }
            _ => panic!("expected a response"),
        }
    }

    #[tokio::test]
    async fn produce_v2_is_answered_unsupported_version_per_partition() {
        let mut body = BytesMut::new();
        body.put_i16(1); // acks
        body.put_i32(1000);
        body.put_i32(1);
        put_string(&mut body, b"t");
        body.put_i32(1);
        body.put_i32(3);
        body.put_i32(2);
        body.put_slice(&[0, 0]);
        let response = answer(ApiKey::Produce, 2, &body).await;
        let mut r = Reader { buf: response };
        assert_eq!(r.i32().unwrap() as usize, r.buf.len());
        assert_eq!(r.i32().unwrap(), 77);
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(&r.string().unwrap()[..], b"t");
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.i32().unwrap(), 3);
        assert_eq!(r.i16().unwrap(), UNSUPPORTED);
        assert_eq!(r.i64().unwrap(), -1);
        assert_eq!(r.i64().unwrap(), -1);
        assert_eq!(r.i32().unwrap(), 0);
        assert!(r.buf.is_empty());
    }

    #[test]
    fn a_forged_array_length_is_refused_without_allocating() {
        let mut body = BytesMut::new();
        body.put_i16(1);
        body.put_i32(1000);
        body.put_i32(i32::MAX);
        let result = respond(ApiKey::Produce, 1, frame(ApiKey::Produce, 1, &body));
        assert!(result.is_err());
    }
}
