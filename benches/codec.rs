//! Cost of the registration fast path: build + sign, and parse + verify,
//! of a Registration Request carrying an NAI (RFC 2794) and the MN-HA
//! authentication extension (HMAC-MD5, RFC 5944 §3.5.1).
//!
//! Run: `cargo bench --bench codec`

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mip4::auth::{self, SecurityAssociation};
use mip4::wire::{Extension, Flags, RequestRepr};

fn request() -> RequestRepr {
    RequestRepr {
        flags: Flags::D | Flags::T,
        lifetime: 1800,
        home_address: Ipv4Addr::new(10, 1, 0, 5),
        home_agent: Ipv4Addr::new(192, 0, 2, 1),
        care_of_address: Ipv4Addr::new(198, 51, 100, 7),
        identification: 0xe8fe_6f81_d72b_d28f,
        extensions: vec![Extension::Nai(b"alice@corp.example".to_vec())],
    }
}

fn bench(c: &mut Criterion) {
    let sa = SecurityAssociation::hmac_md5(0x1000, b"0123456789abcdef").unwrap();
    let repr = request();
    let signed = auth::sign_request(&repr, &sa);

    let mut g = c.benchmark_group("registration_request_nai_mnha");
    g.throughput(Throughput::Elements(1));
    g.bench_function("build_sign", |b| {
        b.iter(|| auth::sign_request(black_box(&repr), black_box(&sa)))
    });
    g.bench_function("parse_verify", |b| {
        b.iter(|| {
            let msg = black_box(&signed[..]);
            let parsed = RequestRepr::parse_bytes(msg).expect("parses");
            let end = auth::verify_mn_ha(msg, &sa).expect("verifies");
            (parsed, end)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
