//! Stage 5 of a request, the binding update (RFC 5944 §3.8.2.2, §3.8.3):
//! registration with the RFC 3519 and RFC 2794 parts, the daemon's install
//! result that releases the held reply, and deregistration.

use super::*;

impl HomeAgent {
    /// Stage 5, registration (RFC 5944 §3.8.2.2, RFC 2794, RFC 3519 §3.2):
    /// the binding is entered and the daemon asked to install it; the
    /// accepted reply waits for [`install_result`](Self::install_result).
    pub(super) fn register(
        &mut self,
        now: Instant,
        ctx: ReplyCtx,
        req: &ParsedRequest<'_>,
    ) -> Disposition {
        let hdr = req.hdr;
        // Stage 2 named the node; a context without one never gets here.
        let Some(idx) = ctx.node else {
            return self.deny(ctx, Denial::NoMnHaAuth);
        };
        // The home address: given (owned, stage 2), or assigned (RFC 2794:
        // 0.0.0.0 with NAI).
        let home = if hdr.home_address.is_unspecified() {
            match self.assign_home_address(idx) {
                Some(h) => h,
                None => return self.deny(ctx, Denial::PoolExhausted),
            }
        } else {
            hdr.home_address
        };
        let coa = hdr.care_of_address;
        if coa.is_unspecified() || coa.is_broadcast() || coa.is_multicast() || coa.is_loopback() {
            return self.deny(ctx, Denial::CareOfNotUnicast);
        }
        let (tunnel, mut reply_exts) = match self.udp_tunnelling(&ctx, req) {
            Ok(t) => t,
            Err(why) => return self.deny(ctx, why),
        };
        let (ipv6, prefix_reply) = self.dsmipv4(idx, home, req);
        reply_exts.extend(prefix_reply);

        // RFC 5944 §3.8.3.1: the granted lifetime is at most the policy's.
        let lifetime = hdr.lifetime.min(self.cfg.max_lifetime);
        let code = if hdr.flags.contains(Flags::S) {
            // Simultaneous bindings are declined: the new binding replaces
            // the old (RFC 5944 §3.8.3.1, code 1).
            ReplyCode::ACCEPTED_NO_SIMULTANEOUS_BINDINGS
        } else {
            ReplyCode::ACCEPTED
        };
        let binding = Binding {
            home_address: home,
            care_of_address: coa,
            source: ctx.src,
            lifetime,
            expires: now + Duration::from_secs(u64::from(lifetime)),
            identification: hdr.identification,
            flags: hdr.flags,
            reverse_tunnel: hdr.flags.contains(Flags::T),
            tunnel,
            nai: ctx.nai.clone().map(Vec::into_boxed_slice),
            spi: self.nodes[idx].conf.spi,
            ipv6,
        };
        self.changes.bindings.push(home);
        let moved = self
            .bindings
            .insert(binding.clone())
            .is_none_or(|old| old.dataplane_differs(&binding));
        debug!(
            home_address = %home, care_of = %coa, src = %ctx.src, lifetime, requested = hdr.lifetime,
            reverse_tunnel = binding.reverse_tunnel, tunnel = ?tunnel, tnc = ctx.tnc, moved,
            "registration valid: installing before the reply"
        );
        // A renewal too: the daemon checks it against what it installed,
        // and the reply says "accepted" only once all of it is there.
        let ctx = ReplyCtx {
            hdr: Hdr {
                home_address: home,
                ..ctx.hdr
            },
            ..ctx
        };
        self.awaiting_install.insert(
            home,
            PendingReply {
                ctx,
                code,
                lifetime,
                exts: reply_exts,
                moved,
            },
        );
        self.out.push_back(Output::BindingUp(binding));
        Disposition::AwaitingInstall(code)
    }

    /// The daemon's answer to [`Output::BindingUp`]: `Ok` once the
    /// binding's tunnel and route are in place. Then, and only then, the
    /// accepted reply leaves; otherwise the binding is dropped (and what
    /// was installed of it torn down) and the node denied with 130.
    pub fn install_result(&mut self, home: Ipv4Addr, result: Result<(), &str>) {
        let Some(p) = self.awaiting_install.remove(&home) else {
            // A restored binding (no reply waits for it): one that cannot
            // be installed is not kept.
            if let Err(e) = result {
                self.drop_uninstallable(home, e);
            }
            return;
        };
        match result {
            Ok(()) => {
                self.counters.accepted += 1;
                if p.moved {
                    info!(
                        home_address = %home, care_of = %p.ctx.hdr.care_of_address, src = %p.ctx.src,
                        lifetime = p.lifetime, tnc = p.ctx.tnc, "registration accepted: {}", p.code
                    );
                } else {
                    debug!(
                        home_address = %home, care_of = %p.ctx.hdr.care_of_address, src = %p.ctx.src,
                        lifetime = p.lifetime, tnc = p.ctx.tnc, "renewal accepted: {}", p.code
                    );
                }
                self.reply(&p.ctx, p.code, p.lifetime, p.exts);
            }
            Err(e) => {
                self.drop_uninstallable(home, e);
                self.deny(p.ctx, Denial::InstallFailed);
            }
        }
    }

    /// Drops a binding the daemon could not install, and what was
    /// installed of it.
    pub(super) fn drop_uninstallable(&mut self, home: Ipv4Addr, e: &str) {
        self.counters.install_failed += 1;
        error!(home_address = %home, "binding not installed, dropped: {e}");
        if let Some(b) = self.bindings.remove(home) {
            self.changes.bindings.push(home);
            self.out.push_back(Output::BindingDown {
                binding: b,
                reason: DownReason::InstallFailed,
            });
        }
    }

    /// RFC 3519 §3.2: UDP tunnelling when asked and a NAT is detected
    /// (source address differs from the care-of address) or forced.
    /// Returns the tunnel mode and the UDP Tunnel Reply, if one is due.
    pub(super) fn udp_tunnelling(
        &self,
        ctx: &ReplyCtx,
        req: &ParsedRequest<'_>,
    ) -> Result<(TunnelMode, Vec<Extension>), Denial> {
        let udp_req = req.protected().find_map(|e| {
            match (e.type_ == ext_type::UDP_TUNNEL_REQUEST)
                .then(|| Extension::parse(e.type_, e.data))
            {
                Some(Ok(Extension::UdpTunnelRequest(r))) => Some(r),
                _ => None,
            }
        });
        let Some(r) = udp_req else {
            return Ok((TunnelMode::Ipip, Vec::new()));
        };
        let coa = ctx.hdr.care_of_address;
        let nat = *ctx.src.ip() != coa && !r.registration_through_fa;
        let declined = Ok((
            TunnelMode::Ipip,
            vec![udp_reply(UdpTunnelReply::CODE_DECLINED, 0)],
        ));
        if !self.cfg.udp_tunnelling {
            return if r.force {
                Err(Denial::UdpForcedButDisabled)
            } else {
                declined
            };
        }
        if !(nat || r.force) {
            return declined;
        }
        if r.encapsulation != ENCAP_IPIP {
            return Err(Denial::UdpNotIpInIp);
        }
        info!(src = %ctx.src, care_of = %coa, nat, forced = r.force, "UDP tunnelling (RFC 3519) for this binding");
        Ok((
            TunnelMode::Udp,
            vec![udp_reply(
                UdpTunnelReply::CODE_ACCEPTED,
                self.cfg.udp_keepalive,
            )],
        ))
    }

    /// Stage 5, deregistration (RFC 5944 §3.8.2.2): lifetime 0, or the
    /// care-of address equal to the home address (the node is home). The
    /// home address is the node's own (stage 2).
    pub(super) fn deregister(&mut self, ctx: ReplyCtx) -> Disposition {
        let home = if ctx.hdr.home_address.is_unspecified() {
            ctx.node.and_then(|i| self.nodes[i].assigned)
        } else {
            Some(ctx.hdr.home_address)
        };
        let removed = home.and_then(|h| {
            self.awaiting_install.remove(&h);
            self.changes.bindings.push(h);
            self.bindings.remove(h)
        });
        let had = removed.is_some();
        if let Some(b) = removed {
            self.out.push_back(Output::BindingDown {
                binding: b,
                reason: DownReason::Deregistered,
            });
        }
        self.counters.accepted += 1;
        self.counters.deregistered += 1;
        info!(
            home_address = %ctx.hdr.home_address, src = %ctx.src, had_binding = had,
            "deregistration accepted ({})",
            if ctx.hdr.lifetime == 0 { "lifetime 0" } else { "care-of address is the home address" }
        );
        self.reply(&ctx, ReplyCode::ACCEPTED, 0, Vec::new());
        Disposition::Replied(ReplyCode::ACCEPTED)
    }

    /// RFC 2794: a node that asked with home address 0.0.0.0 gets its
    /// configured address, the one it had, or a free one from the pool.
    pub(super) fn assign_home_address(&mut self, idx: usize) -> Option<Ipv4Addr> {
        if let Some(h) = self.nodes[idx]
            .conf
            .home_address
            .or(self.nodes[idx].assigned)
        {
            return Some(h);
        }
        let pool = self.cfg.address_pool?;
        let taken = |a: Ipv4Addr, nodes: &[Node]| nodes.iter().any(|n| n.assigned == Some(a));
        let free = pool.iter().find(|&a| !taken(a, &self.nodes))?;
        self.nodes[idx].assigned = Some(free);
        info!(home_address = %free, "home address assigned from the pool (RFC 2794)");
        Some(free)
    }
}
