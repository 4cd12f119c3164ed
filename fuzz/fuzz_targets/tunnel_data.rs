//! RFC 3519 Tunnel Data header parser: never panics; round trip holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::wire::tunnel::{TunnelDataPacket, TunnelDataRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = TunnelDataPacket::new_checked(data) {
        if let Ok(r) = TunnelDataRepr::parse(&p) {
            let b = r.to_bytes_with(p.payload());
            let q = TunnelDataPacket::new_checked(&b[..]).unwrap();
            assert_eq!(TunnelDataRepr::parse(&q), Ok(r));
            assert_eq!(q.payload(), p.payload());
        }
    }
});
