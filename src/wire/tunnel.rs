//! RFC 3519 §3.3 Tunnel Data message (type 4).
