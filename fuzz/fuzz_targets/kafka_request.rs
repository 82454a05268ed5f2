//! Kafka request frames (without the size prefix, as a connection cuts them) through the
//! broker's request dispatch: API-key and version routing, request header decoding, the shape
//! checks and body decoding, and the responses built without an actor (UNSUPPORTED_VERSION,
//! the legacy message formats). Any frame may be refused; none may panic.
//!
//! The handlers' work with the broker's actors is not driven here (a live broker per input is
//! far too slow to fuzz); the record validation a Produce handler runs is the `record_batch`
//! target.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir::protocol::api::decode_request(Bytes::copy_from_slice(data));
});
