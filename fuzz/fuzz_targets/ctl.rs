//! The control protocol (src/ctl.rs) as a daemon reads a request line and
//! as mip4ctl reads a response line: never panics; a request parsed
//! re-serialises to a line that parses to the same request, and a bad line
//! is answered with an error response, not a dropped connection.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::ctl::{parse_request, Response};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    match parse_request(&line) {
        Ok(req) => {
            let again = serde_json::to_string(&req).unwrap();
            assert_eq!(parse_request(&again).unwrap(), req);
        }
        Err(resp) => assert!(!resp.ok && resp.error.is_some()),
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let again = serde_json::to_vec(&resp).unwrap();
        let back: Response = serde_json::from_slice(&again).unwrap();
        assert_eq!(back.ok, resp.ok);
        assert_eq!(back.error, resp.error);
    }
});
