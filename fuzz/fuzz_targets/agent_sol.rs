//! ICMP Agent Solicitation parser: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::wire::icmp::AgentSolicitationRepr;

fuzz_target!(|data: &[u8]| {
    let _ = AgentSolicitationRepr::parse_bytes(data);
});
