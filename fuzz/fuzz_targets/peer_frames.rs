//! Frame decoding of weir's two TCP protocols: the coordination wire (`weir coordinator` ↔
//! brokers) and the inter-broker wire. The first byte picks which message type the reader
//! expects; the rest is the byte stream, read frame after frame as a connection does until it
//! ends or a frame is refused. A decoded message must survive re-encoding.
#![no_main]

use std::fmt::Debug;

use futures::FutureExt;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use weir::actors::coordination::wire::{self as coord, ClientMessage, ServerMessage};
use weir::transport::framing::Framing;
use weir::transport::wire::{self as peer, Hello, HelloReply, RequestFrame, ResponseFrame};

/// The bound the inter-broker request framing runs with (the default `socket.request.max.bytes`).
const PEER_MAX_LEN: usize = 104_857_600;

/// Reads frames until the stream ends or one is refused; `check` sees each decoded message.
/// A slice never makes a read wait, so each read completes when first polled.
fn read_all<T: DeserializeOwned>(
    framing: Framing,
    mut stream: &[u8],
    mut check: impl FnMut(&T, &Framing),
) {
    while let Some(Ok(Some(message))) = framing.read::<T>(&mut stream).now_or_never() {
        check(&message, &framing);
    }
}

/// Re-encoding a decoded message and decoding it again gives the same message.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    message: &T,
    framing: &Framing,
) {
    let bytes = framing.encode(message).expect("a decoded message encodes");
    let back = framing
        .read::<T>(&mut bytes.as_slice())
        .now_or_never()
        .expect("a slice read completes at once")
        .expect("a re-encoded message decodes")
        .expect("one frame");
    assert_eq!(&back, message);
}

/// Re-encoding works for messages without `PartialEq`.
fn encodes<T: Serialize>(message: &T, framing: &Framing) {
    framing.encode(message).expect("a decoded message encodes");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, stream)) = data.split_first() else {
        return;
    };
    let coordination = coord::FRAMING;
    match which % 6 {
        0 => read_all::<ClientMessage>(coordination, stream, round_trips),
        1 => read_all::<ServerMessage>(coordination, stream, round_trips),
        2 => read_all::<Hello>(peer::HANDSHAKE, stream, round_trips),
        3 => read_all::<HelloReply>(peer::HANDSHAKE, stream, round_trips),
        4 => read_all::<RequestFrame>(peer::framing(PEER_MAX_LEN), stream, encodes),
        _ => read_all::<ResponseFrame>(peer::framing(PEER_MAX_LEN), stream, encodes),
    }
});
