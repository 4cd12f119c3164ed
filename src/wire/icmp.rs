//! ICMP Agent Advertisement and Agent Solicitation, RFC 5944 §2.1.
