//! Registration Request parser: never panics; whatever parses re-emits
//! to bytes that parse to the same Repr.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::wire::{RequestPacket, RequestRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RequestPacket::new_checked(data) {
        let _: Vec<_> = p.extensions().collect();
        if let Ok(r) = RequestRepr::parse(&p) {
            assert_eq!(RequestRepr::parse_bytes(&r.to_bytes()).as_ref(), Ok(&r));
        }
    }
});
