//! Registration Reply parser: never panics; round trip holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::wire::{ReplyPacket, ReplyRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ReplyPacket::new_checked(data) {
        let _: Vec<_> = p.extensions().collect();
        if let Ok(r) = ReplyRepr::parse(&p) {
            assert_eq!(ReplyRepr::parse_bytes(&r.to_bytes()).as_ref(), Ok(&r));
        }
    }
});
