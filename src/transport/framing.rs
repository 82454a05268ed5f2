//! Versioned rmp-serde frames on a byte stream: `[u32 big-endian length][u8 version][rmp-serde
//! message]`, the length counting the version byte and the message. Both of weir's own TCP
//! protocols use them: the coordination wire (`weir coordinator` ↔ brokers) and the
//! inter-broker wire ([`super::wire`]), each with its own version and size bound.
//!
//! Reading is bounded whatever the peer sends: a declared length above the bound is refused
//! before anything is allocated, and a frame's buffer grows only as its bytes arrive, so a
//! peer that declares a large frame and stalls holds no memory it did not send. With
//! [`Framing::read_within`] a frame, once its first byte arrived, must be whole within a
//! bound, so a peer trickling a partial frame (a slowloris) cannot hold the connection.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What a frame's buffer starts with before its bytes arrive.
const READ_CHUNK: usize = 64 * 1024;

/// One protocol's framing: its version byte and its largest frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub version: u8,
    pub max_len: usize,
}

/// Why a frame could not be read; every one of them ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("protocol version {got}, expected {expected}")]
    Version { got: u8, expected: u8 },
    #[error("undecodable message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("a partial frame was not completed within {0:?}")]
    Stalled(Duration),
}

impl Framing {
    /// Encodes one message as a whole frame (length prefix included).
    pub fn encode<T: Serialize>(&self, message: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        let mut frame = vec![0u8; 5];
        frame[4] = self.version;
        rmp_serde::encode::write(&mut frame, message)?;
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        Ok(frame)
    }

    /// Reads one frame; `Ok(None)` on a clean end of stream between frames.
    pub async fn read<T: DeserializeOwned>(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
    ) -> Result<Option<T>, FrameError> {
        self.read_within(reader, None).await
    }

    /// [`Framing::read`], with the frame's bytes after its first one due within
    /// `frame_timeout` (the wait for the first byte is not bounded).
    pub async fn read_within<T: DeserializeOwned>(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        frame_timeout: Option<Duration>,
    ) -> Result<Option<T>, FrameError> {
        let mut len = [0u8; 4];
        match reader.read_exact(&mut len[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let rest = self.read_rest(reader, len);
        match frame_timeout {
            Some(limit) => tokio::time::timeout(limit, rest)
                .await
                .map_err(|_| FrameError::Stalled(limit))?,
            None => rest.await,
        }
    }

    /// The rest of a frame whose first length byte is in `len[0]`.
    async fn read_rest<T: DeserializeOwned>(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        mut len: [u8; 4],
    ) -> Result<Option<T>, FrameError> {
        reader.read_exact(&mut len[1..]).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_len {
            return Err(FrameError::TooLong {
                len,
                max: self.max_len,
            });
        }
        let mut body = Vec::with_capacity(len.min(READ_CHUNK));
        (&mut *reader)
            .take(len as u64)
            .read_to_end(&mut body)
            .await?;
        if body.len() < len {
            return Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("frame ends after {} of {len} bytes", body.len()),
            )));
        }
        if body[0] != self.version {
            return Err(FrameError::Version {
                got: body[0],
                expected: self.version,
            });
        }
        Ok(Some(rmp_serde::from_slice(&body[1..])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const FRAMING: Framing = Framing {
        version: 1,
        max_len: 1024,
    };

    #[tokio::test]
    async fn a_partial_frame_that_stalls_is_refused_after_the_frame_timeout() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let frame = FRAMING.encode(&"hello".to_string()).unwrap();
        client.write_all(&frame[..frame.len() - 2]).await.unwrap();
        let limit = Duration::from_millis(50);
        let read = FRAMING
            .read_within::<String>(&mut server, Some(limit))
            .await;
        assert!(
            matches!(read, Err(FrameError::Stalled(d)) if d == limit),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_between_frames_is_not_a_stalled_frame() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let limit = Duration::from_millis(20);
        let reading = tokio::spawn(async move {
            FRAMING
                .read_within::<String>(&mut server, Some(limit))
                .await
        });
        // Idle for several frame timeouts, then a whole frame.
        tokio::time::sleep(limit * 5).await;
        client
            .write_all(&FRAMING.encode(&"late".to_string()).unwrap())
            .await
            .unwrap();
        assert_eq!(reading.await.unwrap().unwrap(), Some("late".to_string()));
    }

    #[tokio::test]
    async fn a_stream_ending_inside_a_length_prefix_is_an_error_not_a_clean_end() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[0, 0]).await.unwrap();
        drop(client);
        let read = FRAMING.read::<String>(&mut server).await;
        assert!(matches!(read, Err(FrameError::Io(_))), "{read:?}");
    }
}
