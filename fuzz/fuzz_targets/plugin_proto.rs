//! The plugin <-> mip4d protocol (src/bridge/proto.rs) as either end reads
//! it, from a byte stream split anywhere: never panics; every message
//! decoded re-encodes to a frame that decodes to the same message; the
//! plugin's events folded into its state keep it bounded and its snapshot
//! within one frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mip4::bridge::proto::{self, DaemonMsg, Decoder, PluginMsg, MAX_FRAME};
use mip4::bridge::state::{State, MAX_IKE_SAS};
use serde::{de::DeserializeOwned, Serialize};

/// Decodes `data` (split at `split`) as a stream of `M`; returns what
/// decoded before the first error.
fn decode<M: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    data: &[u8],
    split: usize,
) -> Vec<M> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        d.push(chunk);
        loop {
            match d.next_msg::<M>() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(_) => return out,
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    // What mip4d reads from the plugin.
    let mut state = State::new();
    for m in decode::<PluginMsg>(data, split) {
        let frame = proto::encode(&m).expect("a decoded message fits a frame");
        assert_eq!(
            proto::read_msg::<PluginMsg, _>(&mut &frame[..]).unwrap(),
            Some(m.clone())
        );
        if let PluginMsg::Event { event, .. } = m {
            state.apply(&event);
            assert!(state.len() <= MAX_IKE_SAS);
            let snapshot = proto::encode(&state.snapshot_msg()).expect("snapshot fits a frame");
            assert!(snapshot.len() <= MAX_FRAME + proto::HEADER_LEN);
        }
    }
    // What the plugin reads from mip4d.
    for m in decode::<DaemonMsg>(data, split) {
        let frame = proto::encode(&m).expect("a decoded message fits a frame");
        assert_eq!(
            proto::read_msg::<DaemonMsg, _>(&mut &frame[..]).unwrap(),
            Some(m)
        );
    }
    // The blocking reader on the raw bytes.
    let _ = proto::read_msg::<DaemonMsg, _>(&mut &data[..]);
});
