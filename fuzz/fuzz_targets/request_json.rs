//! decode_request over arbitrary bytes as JSON: a valid request or a typed error
//! reply, never a panic; whatever decodes survives a JSON and a MessagePack round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optimystic_actors::net::Encoding;

fuzz_target!(|data: &[u8]| {
    optimystic_fuzz::check_request(Encoding::Json, data);
});
