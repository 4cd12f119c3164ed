//! An on-path forger for the `forged-tnc` scenario: a host between the MN
//! and the i-HA that answers the MN's trusted-network probe itself with a
//! registration reply carrying Trusted Networks Configured (RFC 5265 §4.1)
//! that it cannot sign, as an attacker wanting the MN to drop its VPN would
//! (RFC 5266 §3.4: only an authenticated reply may make the MN believe it
//! is inside). nftables redirects registration requests towards the i-HA to
//! this socket; conntrack makes the answers come from the i-HA's address
//! and port, so only the authenticator can tell them apart.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::netns::{self, Netns};
use super::{Error, Result};
use crate::auth::{sign_reply, SecurityAssociation};
use crate::wire::{Extension, ReplyCode, ReplyRepr, RequestRepr};

/// The running forger; stops (and its thread ends) on drop.
pub struct Forger {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forger {
    /// In `ns`: redirect UDP 434 towards `home_agent` to a local socket and
    /// answer every request there with two forged TNC replies, one without
    /// any authenticator, one signed with a key of the forger's own.
    pub fn start(ns: &Netns, home_agent: &str) -> Result<Forger> {
        ns.exec(
            "nft",
            &[&format!(
                "add table ip forger; add chain ip forger pre {{ type nat hook prerouting priority -100 ; }} ; add rule ip forger pre ip daddr {home_agent} udp dport 434 counter redirect to :434"
            )],
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let name = ns.name().to_string();
        let (s, a) = (stop.clone(), answered.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let io = |source| Error::Io {
                path: format!("{name}: udp 0.0.0.0:434"),
                source,
            };
            let sock = netns::enter(&name).and_then(|()| {
                let sock = UdpSocket::bind("0.0.0.0:434").map_err(io)?;
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .map_err(io)?;
                Ok(sock)
            });
            let sock = match sock {
                Ok(sock) => {
                    let _ = ready_tx.send(Ok(()));
                    sock
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // Any key but the MN's: the MN must reject the authenticator.
            let Ok(guess) = SecurityAssociation::hmac_md5(4096, b"not the MN's key") else {
                return;
            };
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = RequestRepr::parse_bytes(&buf[..n]) else {
                    continue;
                };
                // RFC 5944 §3.4: a reply echoes the request's home address,
                // home agent and identification; TNC says "inside".
                let reply = ReplyRepr {
                    code: ReplyCode::ACCEPTED,
                    lifetime: req.lifetime,
                    home_address: req.home_address,
                    home_agent: req.home_agent,
                    identification: req.identification,
                    extensions: vec![Extension::TrustedNetworksConfigured],
                };
                let _ = sock.send_to(&reply.to_bytes(), from);
                let _ = sock.send_to(&sign_reply(&reply, &guess), from);
                a.fetch_add(1, Ordering::SeqCst);
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::Other("forger: socket not bound in 10 s".into())),
        }
        Ok(Forger {
            stop,
            answered,
            thread: Some(thread),
        })
    }

    /// Requests answered with forged replies so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
