//! The inter-broker protocol on TCP: the typed [`PeerRequest`]s and [`PeerResponse`]s of the
//! in-process seam, in versioned rmp-serde frames ([`super::framing`]).
//!
//! A connection belongs to one (dialer, listener) pair and one direction of use: the dialer
//! sends requests, the listener answers them, and a broker that wants to ask the other way
//! dials its own connection. It opens with:
//!
//! 1. the dialer's [`MAGIC`] bytes, `b"WEIR"`: read as a Kafka request size that is 1.4 GB,
//!    far above any `socket.request.max.bytes`, so a listener shared with Kafka clients tells
//!    a peer from a client by its first bytes;
//! 2. a [`Hello`] frame: who is calling (broker id and broker epoch, the czxid of its
//!    `/brokers/ids/<id>` registration) and whom it means to reach;
//! 3. the listener's [`HelloReply`]: `Welcome`, or `Refused` with the reason (an unregistered
//!    id, an epoch from a previous life of the broker, the wrong broker) before it closes.
//!
//! Then the dialer sends [`RequestFrame`]s, each with an id, and the listener answers each
//! with a [`ResponseFrame`] naming that id, in whatever order they complete (a long-polling
//! replica fetch does not hold up a controller request behind it).
//!
//! Every frame carries [`PROTOCOL_VERSION`]: a peer of another version gets a `Refused` in
//! this version and the connection closes, both sides logging which versions met.

use serde::{Deserialize, Serialize};

use super::framing::Framing;
use super::peer::{PeerRequest, PeerResponse, TransportError};

/// What a dialer writes first.
pub const MAGIC: [u8; 4] = *b"WEIR";

/// Bumped on any incompatible change of the frames below or of the messages they carry.
pub const PROTOCOL_VERSION: u8 = 1;

/// The handshake frames are small; a larger one is not a weir peer.
pub const HANDSHAKE_MAX_LEN: usize = 64 * 1024;

/// Dialer → listener, right after [`MAGIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The dialer's broker id.
    pub from: i32,
    /// The dialer's broker epoch: its registration's czxid. A restarted broker has a new one,
    /// so a connection from its previous life is refused.
    pub broker_epoch: i64,
    /// The broker the dialer means to reach (an address reused by another broker is caught).
    pub to: i32,
}

/// Listener → dialer: the answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Welcome { broker_id: i32 },
    Refused { reason: String },
}

/// Dialer → listener: one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: u64,
    pub request: PeerRequest,
}

/// Listener → dialer: the answer to the request with the same id.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResponseFrame {
    pub id: u64,
    pub result: Result<PeerResponse, TransportError>,
}

/// The handshake's framing.
pub const HANDSHAKE: Framing = Framing {
    version: PROTOCOL_VERSION,
    max_len: HANDSHAKE_MAX_LEN,
};

/// Request and response framing, bounded by `max_len` (the broker's
/// `socket.request.max.bytes`).
pub fn framing(max_len: usize) -> Framing {
    Framing {
        version: PROTOCOL_VERSION,
        max_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::controller::messages::ControlledShutdown;
    use crate::actors::replication::{FetchedPartition, ReplicaFetchResponse};
    use crate::protocol::error::ApiError;
    use crate::storage::TopicPartition;
    use crate::transport::framing::FrameError;
    use kafka_protocol::error::ResponseError;

    #[test]
    fn magic_is_no_kafka_request_size() {
        let as_size = i32::from_be_bytes(MAGIC);
        assert!(
            as_size > 104_857_600,
            "above the default socket.request.max.bytes"
        );
    }

    #[tokio::test]
    async fn requests_and_responses_round_trip() {
        let f = framing(1 << 20);
        let request = RequestFrame {
            id: 7,
            request: PeerRequest::ControlledShutdown(ControlledShutdown {
                broker_id: 2,
                broker_epoch: 42,
            }),
        };
        let bytes = f.encode(&request).unwrap();
        let back: RequestFrame = f.read(&mut bytes.as_slice()).await.unwrap().unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(
            back.request,
            PeerRequest::ControlledShutdown(ControlledShutdown {
                broker_id: 2,
                broker_epoch: 42
            })
        ));

        let tp = TopicPartition {
            topic: "orders".into(),
            partition: 3,
        };
        let mut fetched = FetchedPartition::failed(
            tp.clone(),
            ApiError::with_message(ResponseError::NotLeaderOrFollower, "moved"),
        );
        fetched.records = bytes::Bytes::from_static(b"stored batch bytes");
        let response = ResponseFrame {
            id: 9,
            result: Ok(PeerResponse::ReplicaFetch(ReplicaFetchResponse {
                partitions: vec![fetched],
            })),
        };
        let bytes = f.encode(&response).unwrap();
        let back: ResponseFrame = f.read(&mut bytes.as_slice()).await.unwrap().unwrap();
        match back.result {
            Ok(PeerResponse::ReplicaFetch(r)) => {
                assert_eq!(r.partitions[0].tp, tp);
                assert_eq!(&r.partitions[0].records[..], b"stored batch bytes");
                assert_eq!(
                    r.partitions[0].error.as_ref().unwrap().code,
                    ResponseError::NotLeaderOrFollower.code()
                );
            }
            other => panic!("{other:?}"),
        }
        let failed = ResponseFrame {
            id: 10,
            result: Err(TransportError::Closed(3)),
        };
        let bytes = f.encode(&failed).unwrap();
        let back: ResponseFrame = f.read(&mut bytes.as_slice()).await.unwrap().unwrap();
        assert_eq!(back.result.unwrap_err(), TransportError::Closed(3));
    }

    #[tokio::test]
    async fn another_version_is_told_apart() {
        let mut bytes = HANDSHAKE
            .encode(&Hello {
                from: 1,
                broker_epoch: 5,
                to: 2,
            })
            .unwrap();
        bytes[4] = PROTOCOL_VERSION + 1;
        let read = HANDSHAKE.read::<Hello>(&mut bytes.as_slice()).await;
        assert!(matches!(
            read,
            Err(FrameError::Version { got, expected }) if got == PROTOCOL_VERSION + 1 && expected == PROTOCOL_VERSION
        ));
    }
}
