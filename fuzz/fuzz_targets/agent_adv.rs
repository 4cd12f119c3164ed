//! ICMP Agent Advertisement parser: never panics; round trip holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::wire::icmp::{AdvertisementPacket, AgentAdvertisementRepr};

fuzz_target!(|data: &[u8]| {
    // Half the inputs get a correct checksum so the extensions are reached.
    let mut buf = data.to_vec();
    if buf.len() >= 8 && buf[1] & 1 == 0 {
        buf[2] = 0;
        buf[3] = 0;
        let c = mip4::wire::icmp::checksum(&buf);
        buf[2..4].copy_from_slice(&c.to_be_bytes());
    }
    if let Ok(p) = AdvertisementPacket::new_checked(&buf[..]) {
        let _: Vec<_> = p.extensions().collect();
        if let Ok(r) = AgentAdvertisementRepr::parse(&p) {
            assert_eq!(AgentAdvertisementRepr::parse_bytes(&r.to_bytes()).as_ref(), Ok(&r));
        }
    }
});
