#!/usr/bin/env python3
"""Second, independent encoder: scapy's MobileIP layer.

Prints one message per line as "<kind> <hex>", kind being rrq, rrp or
tunnel. The Rust test (tests/conformance.rs, scapy_*) decodes each with
the codec and checks the fields against the values below, which it
repeats. Extensions are not modelled by scapy; the NAI and MN-HA auth
extensions appended here are raw bytes laid out from RFC 2794 §2 and
RFC 5944 §3.5.2.
"""
import struct

from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ, MobileIPTunnelData


def hexs(pkt):
    return bytes(pkt).hex()


nai = b"alice@example.com"
nai_ext = bytes([131, len(nai)]) + nai
auth_ext = bytes([32, 20]) + struct.pack("!I", 0x1234) + bytes(range(16))

rrq1 = MobileIP(type=1) / MobileIPRRQ(
    flags=0x0A, lifetime=1800, homeaddr="10.1.0.5", haaddr="10.1.0.1",
    coaddr="192.0.2.7", id=0x0102030405060708)
rrq2 = MobileIP(type=1) / MobileIPRRQ(
    flags=0xFF, lifetime=0, homeaddr="0.0.0.0", haaddr="10.1.0.1",
    coaddr="198.51.100.9", id=0xFFFFFFFFFFFFFFFF) / (nai_ext + auth_ext)
rrq3 = MobileIP(type=1) / MobileIPRRQ(
    flags=0x80, lifetime=65535, homeaddr="10.1.0.6", haaddr="10.1.0.1",
    coaddr="10.1.0.6", id=1) / nai_ext
rrp1 = MobileIP(type=3) / MobileIPRRP(
    code=0, lifetime=1800, homeaddr="10.1.0.5", haaddr="10.1.0.1",
    id=0x0102030405060708) / auth_ext
rrp2 = MobileIP(type=3) / MobileIPRRP(
    code=133, lifetime=0, homeaddr="10.1.0.5", haaddr="10.1.0.1",
    id=0xDEADBEEF00000001)
tun = MobileIP(type=4) / MobileIPTunnelData(nexthdr=4) / bytes([0x45, 0, 0, 20])

for kind, p in [("rrq", rrq1), ("rrq", rrq2), ("rrq", rrq3),
                ("rrp", rrp1), ("rrp", rrp2), ("tunnel", tun)]:
    print(kind, hexs(p))
