//! Versioned rmp-serde frames on a byte stream: `[u32 big-endian length][u8 version][rmp-serde
//! message]`, the length counting the version byte and the message. Both of weir's own TCP
//! protocols use them: the coordination wire (`weir coordinator` ↔ brokers) and the
//! inter-broker wire ([`super::wire`]), each with its own version and size bound.
//!
//! Reading is bounded whatever the peer sends: a declared length above the bound is refused
//! before anything is allocated, and a frame's buffer grows only as its bytes arrive, so a
//! peer that declares a large frame and stalls holds no memory it did not send.

use serde::de::DeserializeOwned;
use serde::Serialize;
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
        let mut len = [0u8; 4];
        match reader.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
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
