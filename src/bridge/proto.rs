//! The plugin <-> mip4d protocol, shared by both ends.
//!
//! A stream of frames on a unix socket that mip4d owns (root-only, 0600):
//! each frame is a 4-byte big-endian length followed by that many bytes of
//! JSON (one message). JSON because the messages are few and small (IKE
//! events) and an operator can read them with `socat`; the length prefix
//! lets either end refuse an oversized frame before reading it.
//!
//! Session: the plugin connects and sends [`PluginMsg::Hello`] and a full
//! [`PluginMsg::Snapshot`], then one [`PluginMsg::Event`] per charon hook.
//! mip4d answers [`DaemonMsg::Hello`] and may send [`DaemonMsg::Request`]s,
//! each answered by a [`PluginMsg::ActionResult`]. A peer whose `version`
//! is outside [`MIN_VERSION`]..=[`VERSION`] is disconnected; within it,
//! each end uses only what both speak ([`Action::Roam`] needs 2).

use std::io::{self, Read, Write};
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Protocol version this end speaks. 2 added [`Action::Roam`] and
/// [`IkeSa::child_sas`]; 3 added [`Event::IkeState`] and
/// [`IkeSaState::connecting`]; from 4 a roam request that finds no path
/// stops looking for it after 100 ms and waits for mip4d to ask again
/// ([`PARKED_ROAM_VERSION`]). Older peers are still served: a version-1
/// plugin is never asked to roam, a missing `child_sas` means "not said",
/// and a plugin older than 3 reports no IKE_SA before it is up. (An older
/// mip4d refuses a newer plugin's Hello, so no event it cannot read ever
/// reaches it: upgrade both together.)
pub const VERSION: u32 = 4;
/// Oldest protocol version still accepted from the other end.
pub const MIN_VERSION: u32 = 1;

/// Whether a peer speaking `version` is served.
pub fn compatible(version: u32) -> bool {
    (MIN_VERSION..=VERSION).contains(&version)
}

/// The first version with [`Action::Roam`].
pub const ROAM_VERSION: u32 = 2;
/// The first version whose plugin, when charon knows no path for a roam,
/// looks for one only briefly and then waits (for charon's roam event, or
/// mip4d's next roam request for the connection, which mip4d sends when a
/// default route comes): strongswan-plugin/mip4_actions.c, `later()`.
pub const PARKED_ROAM_VERSION: u32 = 4;
/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;
/// Largest frame body either end accepts. A snapshot of a few dozen
/// IKE_SAs is a few KiB; anything near this is a bug or an attack.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("connection closed inside a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("protocol version {theirs} not supported (this end speaks {ours})")]
    Version { ours: u32, theirs: u32 },
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// An IP address and port (an IKE endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

/// What the plugin knows of one IKE_SA when a hook fires.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IkeSa {
    /// Connection (peer_cfg) name.
    pub name: String,
    /// charon's unique id of the IKE_SA.
    pub unique_id: u32,
    pub local: Option<Endpoint>,
    pub remote: Option<Endpoint>,
    /// Interface carrying the local endpoint (the new one on ike_update).
    pub local_ifname: Option<String>,
    /// Virtual IPs: the local ones (the MN's TIA, RFC 5266 §4) for
    /// handle_vips and most events, the peer's for assign_vips.
    pub vips: Vec<IpAddr>,
    /// Whether the IKE_SA negotiated MOBIKE (RFC 4555 §3.1); None from a
    /// plugin that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobike: Option<bool>,
    /// CHILD_SAs installed when the hook fired (version 2): charon's
    /// handle_vips comes before the first one, and the TIA carries
    /// nothing until one is up. None from a plugin that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_sas: Option<u32>,
}

/// One charon hook, as mip4d sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "hook", rename_all = "snake_case")]
pub enum Event {
    /// The MN received (handle) or releases its virtual IPs: the TIA.
    HandleVips {
        ike: IkeSa,
        handle: bool,
    },
    /// The gateway assigned (assign) or released the peer's virtual IPs.
    AssignVips {
        ike: IkeSa,
        assign: bool,
    },
    /// MOBIKE moved the IKE_SA; `ike` has the old endpoints.
    IkeUpdate {
        ike: IkeSa,
        new_local: Option<Endpoint>,
        new_remote: Option<Endpoint>,
    },
    IkeUpdown {
        ike: IkeSa,
        up: bool,
    },
    /// `ike` was rekeyed into the IKE_SA `new_unique_id`.
    IkeRekey {
        ike: IkeSa,
        new_unique_id: u32,
    },
    IkeReestablishPre {
        ike: IkeSa,
        new_unique_id: u32,
    },
    IkeReestablishPost {
        ike: IkeSa,
        new_unique_id: u32,
        new_local: Option<Endpoint>,
        new_remote: Option<Endpoint>,
        initiated: bool,
    },
    ChildUpdown {
        ike: IkeSa,
        child: String,
        up: bool,
    },
    /// The node's addresses (address) or routes changed.
    Roam {
        address: bool,
    },
    /// charon's ike_state_change, for the states `ike_updown` does not
    /// tell (version 3).
    IkeState {
        ike: IkeSa,
        state: IkeState,
    },
}

/// IKE_SA states the plugin reports (charon's `ike_sa_state_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IkeState {
    /// IKE_SA_INIT is on its way, whoever initiated (the user, a network
    /// manager, `start_action`, mip4d): the connection's IKE_SA exists.
    Connecting,
    /// The IKE_SA goes; for one that never came up, the only word of it
    /// (charon fires no `ike_updown(down)` for an IKE_SA still connecting).
    Destroying,
}

impl Event {
    /// The IKE_SA the event is about (None for roam).
    pub fn ike(&self) -> Option<&IkeSa> {
        match self {
            Event::HandleVips { ike, .. }
            | Event::AssignVips { ike, .. }
            | Event::IkeUpdate { ike, .. }
            | Event::IkeUpdown { ike, .. }
            | Event::IkeRekey { ike, .. }
            | Event::IkeReestablishPre { ike, .. }
            | Event::IkeReestablishPost { ike, .. }
            | Event::ChildUpdown { ike, .. }
            | Event::IkeState { ike, .. } => Some(ike),
            Event::Roam { .. } => None,
        }
    }
}

/// The latest state of one IKE_SA, as kept by the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IkeSaState {
    pub name: String,
    pub unique_id: u32,
    /// ike_updown(up) seen and no down since.
    pub up: bool,
    pub local: Option<Endpoint>,
    /// The VPN gateway (remote IKE endpoint).
    pub remote: Option<Endpoint>,
    pub local_ifname: Option<String>,
    /// The TIA(s) installed on this node (handle_vips).
    pub tia: Vec<IpAddr>,
    /// Virtual IPs this node handed to the peer (assign_vips, gateway side).
    pub peer_vips: Vec<IpAddr>,
    /// Established CHILD_SAs by name.
    pub children: Vec<String>,
    /// Whether the IKE_SA negotiated MOBIKE, as its latest event said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobike: Option<bool>,
    /// Still connecting: IKE_SA_INIT or IKE_AUTH under way, not up yet
    /// (version 3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connecting: bool,
}

/// charon's own interface filter as it loaded it (`charon.interfaces_use`,
/// `charon.interfaces_ignore`: comma-separated exact names), so mip4d can
/// tell whether charon may take an IKE path over its tunnel devices.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CharonInterfaces {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces_ignore: Option<String>,
}

/// Actions mip4d may ask of charon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Initiate {
        connection: String,
    },
    Terminate {
        connection: String,
    },
    /// Report the IKE_SA's endpoints and local interface (for bypassing
    /// the IPsec policy with probes).
    QueryPath {
        connection: String,
    },
    /// Version 2: mip4d saw a usable address (rtnetlink) while the
    /// connection's IKE_SA lost its path; charon's roam job runs now
    /// instead of after kernel-netlink's 100 ms delay, and MOBIKE (RFC
    /// 4555) follows. Never sent to a version-1 plugin.
    Roam {
        connection: String,
    },
}

impl Action {
    pub fn connection(&self) -> &str {
        match self {
            Action::Initiate { connection }
            | Action::Terminate { connection }
            | Action::QueryPath { connection }
            | Action::Roam { connection } => connection,
        }
    }
}

/// Outcome of an [`Action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Ok,
    /// No such connection, or no IKE_SA of it.
    NotFound,
    /// charon refused or failed.
    Failed,
    /// The plugin does not know the action.
    Unsupported,
    /// The connection is not one the plugin acts on (settings).
    Refused,
    /// charon could not queue the job.
    Unavailable,
}

/// Messages from the plugin to mip4d.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PluginMsg {
    Hello {
        version: u32,
        agent: String,
        /// None from a plugin that does not report it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        charon: Option<CharonInterfaces>,
    },
    /// Everything the plugin knows; sent on every (re)connection.
    Snapshot { ike_sas: Vec<IkeSaState> },
    /// One hook; `seq` counts events since the plugin started, so mip4d can
    /// tell whether it missed some (then the next snapshot has them).
    Event { seq: u64, event: Event },
    ActionResult {
        id: u64,
        status: ActionStatus,
        path: Option<IkeSa>,
    },
}

/// Messages from mip4d to the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DaemonMsg {
    Hello { version: u32 },
    Request { id: u64, action: Action },
}

/// One message as a frame (length prefix + JSON).
pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, ProtoError> {
    let body = serde_json::to_vec(msg).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(ProtoError::Oversized {
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decode one frame body.
pub fn decode_body<M: DeserializeOwned>(body: &[u8]) -> Result<M, ProtoError> {
    serde_json::from_slice(body).map_err(|e| ProtoError::Malformed(e.to_string()))
}

/// Frame length from a header, refusing oversized frames before reading.
fn frame_len(header: [u8; HEADER_LEN]) -> Result<usize, ProtoError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(ProtoError::Oversized {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(len)
}

/// Sans-IO decoder for callers that read on their own (e.g. tokio in
/// mip4d): push bytes, take messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    /// After an error the stream is out of step: drop the connection.
    pub fn next_msg<M: DeserializeOwned>(&mut self) -> Result<Option<M>, ProtoError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = frame_len(*header)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let msg = decode_body(&self.buf[HEADER_LEN..HEADER_LEN + len]);
        self.buf.drain(..HEADER_LEN + len);
        msg.map(Some)
    }
}

/// Blocking read of one message; `Ok(None)` on a clean end of stream
/// (between frames).
pub fn read_msg<M: DeserializeOwned, R: Read>(r: &mut R) -> Result<Option<M>, ProtoError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(ProtoError::Truncated {
            got,
            want: HEADER_LEN,
        });
    }
    let len = frame_len(header)?;
    let mut body = vec![0u8; len];
    let got = read_full(r, &mut body)?;
    if got < len {
        return Err(ProtoError::Truncated { got, want: len });
    }
    decode_body(&body).map(Some)
}

/// Blocking write of one message.
pub fn write_msg<M: Serialize, W: Write>(w: &mut W, msg: &M) -> Result<(), ProtoError> {
    w.write_all(&encode(msg)?)?;
    w.flush()?;
    Ok(())
}

/// Reads until buf is full or end of stream; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ike() -> IkeSa {
        IkeSa {
            name: "home".into(),
            unique_id: 3,
            local: Some(Endpoint {
                addr: Ipv4Addr::new(192, 0, 2, 10).into(),
                port: 4500,
            }),
            remote: Some(Endpoint {
                addr: Ipv4Addr::new(198, 51, 100, 1).into(),
                port: 4500,
            }),
            local_ifname: Some("eth0".into()),
            vips: vec![Ipv4Addr::new(10, 200, 0, 1).into()],
            mobike: Some(true),
            child_sas: Some(1),
        }
    }

    #[test]
    fn versions_one_and_two_are_served_others_not() {
        assert!(compatible(1) && compatible(VERSION));
        assert!(!compatible(0) && !compatible(VERSION + 1));
    }

    #[test]
    fn a_version_one_event_without_child_sas_still_decodes() {
        let body = br#"{"type":"event","seq":1,"event":{"hook":"handle_vips","handle":true,
            "ike":{"name":"vpn","unique_id":1,"local":null,"remote":null,"local_ifname":null,"vips":[]}}}"#;
        let msg: PluginMsg = decode_body(body).unwrap();
        let PluginMsg::Event { event, .. } = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(event.ike().unwrap().child_sas, None);
    }

    #[test]
    fn every_message_round_trips_through_a_frame() {
        let msgs = vec![
            PluginMsg::Hello {
                version: VERSION,
                agent: "test".into(),
                charon: Some(CharonInterfaces {
                    interfaces_use: None,
                    interfaces_ignore: Some("mip4mn0, mip4-0a010505".into()),
                }),
            },
            PluginMsg::Snapshot {
                ike_sas: vec![IkeSaState {
                    name: "home".into(),
                    unique_id: 1,
                    up: true,
                    tia: vec![Ipv4Addr::new(10, 200, 0, 1).into()],
                    ..Default::default()
                }],
            },
            PluginMsg::Event {
                seq: 7,
                event: Event::IkeUpdate {
                    ike: ike(),
                    new_local: ike().remote,
                    new_remote: None,
                },
            },
            PluginMsg::Event {
                seq: 8,
                event: Event::Roam { address: true },
            },
            PluginMsg::ActionResult {
                id: 9,
                status: ActionStatus::NotFound,
                path: Some(ike()),
            },
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            write_msg(&mut stream, m).unwrap();
        }
        let mut r = &stream[..];
        for m in &msgs {
            assert_eq!(read_msg::<PluginMsg, _>(&mut r).unwrap().as_ref(), Some(m));
        }
        assert!(read_msg::<PluginMsg, _>(&mut r).unwrap().is_none());
    }

    #[test]
    fn decoder_reassembles_frames_split_anywhere() {
        let a = DaemonMsg::Hello { version: VERSION };
        let b = DaemonMsg::Request {
            id: 1,
            action: Action::QueryPath {
                connection: "home".into(),
            },
        };
        let c = DaemonMsg::Request {
            id: 2,
            action: Action::Roam {
                connection: "home".into(),
            },
        };
        let mut stream = encode(&a).unwrap();
        stream.extend(encode(&b).unwrap());
        stream.extend(encode(&c).unwrap());
        for split in 0..stream.len() {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                d.push(chunk);
                while let Some(m) = d.next_msg::<DaemonMsg>().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(
                out,
                vec![a.clone(), b.clone(), c.clone()],
                "split at {split}"
            );
        }
    }

    #[test]
    fn oversized_frame_is_refused_before_its_body_is_read() {
        let mut frame = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(b"{}");
        let err = read_msg::<DaemonMsg, _>(&mut &frame[..]).unwrap_err();
        assert!(
            matches!(err, ProtoError::Oversized { len, max } if len == MAX_FRAME + 1 && max == MAX_FRAME)
        );
        let mut d = Decoder::new();
        d.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next_msg::<DaemonMsg>(),
            Err(ProtoError::Oversized { .. })
        ));
    }

    #[test]
    fn oversized_message_is_not_sent() {
        let huge = PluginMsg::Hello {
            version: VERSION,
            agent: "x".repeat(MAX_FRAME),
            charon: None,
        };
        assert!(matches!(encode(&huge), Err(ProtoError::Oversized { .. })));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let bodies: [&[u8]; 6] = [
            b"",
            b"not json",
            b"{\"type\":\"request\"}",
            b"{\"type\":\"launch_missiles\"}",
            b"{\"type\":\"request\",\"id\":-1,\"action\":{\"action\":\"initiate\",\"connection\":\"x\"}}",
            b"\xff\xfe\x00",
        ];
        for body in bodies {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(body);
            let err = read_msg::<DaemonMsg, _>(&mut &frame[..]).unwrap_err();
            assert!(matches!(err, ProtoError::Malformed(_)), "{body:?}: {err}");
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let frame = encode(&DaemonMsg::Hello { version: VERSION }).unwrap();
        for cut in 1..frame.len() {
            let err = read_msg::<DaemonMsg, _>(&mut &frame[..cut]).unwrap_err();
            assert!(matches!(err, ProtoError::Truncated { .. }), "cut {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut d = Decoder::new();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_msg::<DaemonMsg>() {}
            let _ = read_msg::<PluginMsg, _>(&mut &bytes[..]);
        }
    }
}
