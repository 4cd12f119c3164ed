//! Extension walker: never panics; offsets point at the Type octet;
//! parsed extensions re-emit to the same bytes' meaning.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::wire::extension;

fuzz_target!(|data: &[u8]| {
    if let Ok(all) = extension::parse_all(data, 0) {
        for (at, e) in &all {
            assert_eq!(data[*at], e.type_());
            let b = e.to_bytes();
            assert_eq!(extension::parse_all(&b, 0), Ok(vec![(0, e.clone())]));
        }
    }
});
