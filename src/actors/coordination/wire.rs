//! The TCP protocol between `weir coordinator` and its clients: the same typed requests the
//! in-process actors exchange, framed as `[u32 big-endian length][u8 version][rmp-serde
//! message]` (the length counts the version byte and the payload).
//!
//! A connection starts with [`ClientMessage::Connect`] (a new session, or an existing one after
//! a connection loss), answered by [`ServerMessage::Connected`] or
//! [`ServerMessage::ConnectFailed`]. Then requests carry an `xid` so several can be in flight;
//! replies name it back. Watch events are pushed in between, always before the reply of any
//! request that could observe the change that fired them. A frame that is too long, has
//! another version, does not decode, or is unexpected closes the connection and nothing else.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

pub use crate::transport::framing::FrameError;
use crate::transport::framing::Framing;

use super::error::CoordinationError;
use super::types::{Request, Response, SessionEvent, SessionId};

/// Bumped on any incompatible change of the messages below.
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest frame either side accepts: a multi of a few maximal (1 MiB) znodes fits.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// This protocol's frames (public for the fuzz targets, which read them as a connection does).
pub const FRAMING: Framing = Framing {
    version: PROTOCOL_VERSION,
    max_len: MAX_FRAME_LEN,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first frame: `session_id` `None` asks for a new session, `Some` resumes one.
    Connect {
        session_id: Option<SessionId>,
        timeout_ms: u64,
    },
    Request {
        xid: u64,
        request: Request,
    },
    /// A heartbeat; keeps the session alive.
    Ping {
        xid: u64,
    },
    /// Ends the session (its ephemerals go at once) and then the connection.
    Close {
        xid: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    Connected {
        session_id: SessionId,
        timeout_ms: u64,
    },
    /// The session to resume is gone (`SessionExpired`), or the request was bad.
    ConnectFailed {
        error: CoordinationError,
    },
    Reply {
        xid: u64,
        result: Result<Response, CoordinationError>,
    },
    /// The answer to a `Ping` or `Close`.
    Ack {
        xid: u64,
        result: Result<(), CoordinationError>,
    },
    Event(SessionEvent),
}

/// Encodes one message as a whole frame.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    FRAMING.encode(message)
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<T: DeserializeOwned>(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<Option<T>, FrameError> {
    FRAMING.read(reader).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::coordination::types::{CreateMode, EventType, WatchedEvent};

    #[tokio::test]
    async fn frames_round_trip() {
        let messages = vec![
            ClientMessage::Connect {
                session_id: Some(7),
                timeout_ms: 6000,
            },
            ClientMessage::Request {
                xid: 1,
                request: Request::Create {
                    path: "/a".into(),
                    data: vec![1, 2],
                    mode: CreateMode::EphemeralSequential,
                },
            },
        ];
        let mut bytes = Vec::new();
        for m in &messages {
            bytes.extend(encode_frame(m).unwrap());
        }
        let mut reader = bytes.as_slice();
        for m in &messages {
            let got: ClientMessage = read_frame(&mut reader).await.unwrap().unwrap();
            assert_eq!(&got, m);
        }
        assert!(read_frame::<ClientMessage>(&mut reader)
            .await
            .unwrap()
            .is_none());
        let event = ServerMessage::Event(SessionEvent::Watch(WatchedEvent {
            event_type: EventType::NodeDeleted,
            path: "/a".into(),
        }));
        let bytes = encode_frame(&event).unwrap();
        assert_eq!(
            read_frame::<ServerMessage>(&mut bytes.as_slice())
                .await
                .unwrap(),
            Some(event)
        );
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        let oversized = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        assert!(matches!(
            read_frame::<ClientMessage>(&mut oversized.as_slice()).await,
            Err(FrameError::TooLong { .. })
        ));
        let mut wrong_version = encode_frame(&ClientMessage::Ping { xid: 1 }).unwrap();
        wrong_version[4] = 99;
        assert!(matches!(
            read_frame::<ClientMessage>(&mut wrong_version.as_slice()).await,
            Err(FrameError::Version { got: 99, .. })
        ));
        let garbage = [0u8, 0, 0, 3, PROTOCOL_VERSION, 0xc1, 0xff];
        assert!(matches!(
            read_frame::<ClientMessage>(&mut garbage.as_slice()).await,
            Err(FrameError::Decode(_))
        ));
        // A server message is an unknown kind to the server.
        let wrong_kind = encode_frame(&ServerMessage::Ack {
            xid: 1,
            result: Ok(()),
        })
        .unwrap();
        assert!(read_frame::<ClientMessage>(&mut wrong_kind.as_slice())
            .await
            .is_err());
        let torn = &encode_frame(&ClientMessage::Ping { xid: 1 }).unwrap()[..6];
        assert!(read_frame::<ClientMessage>(&mut &torn[..]).await.is_err());
        // A maximal declared length with a few bytes behind it: an error, not a wait.
        let mut promised = (MAX_FRAME_LEN as u32).to_be_bytes().to_vec();
        promised.extend_from_slice(&[PROTOCOL_VERSION, 0x90]);
        assert!(matches!(
            read_frame::<ClientMessage>(&mut promised.as_slice()).await,
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
        ));
    }
}
