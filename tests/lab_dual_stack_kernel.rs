//! `dual-stack-kernel`: DSMIPv4 (RFC 5454) on mip4-ha's kernel tunnel
//! backend (a sit link beside each binding's ipip link, the inner IPv6
//! source checked by its nftables rule) and the mobile node's kernel sit
//! link. It needs a kernel with ESP and sit: the kernel tier (`make
//! check-vm` runs it in the guest). Here, on a kernel without them, the
//! run must be refused naming the tier and the reason.

mod lab_support;

#[test]
fn lab_dual_stack_kernel_runs_only_where_the_kernel_has_sit() {
    let k = mip4::lab::platform::Kernel::detect();
    if k.esp && k.sit {
        // A kernel with both: the scenario itself (its pre.dat asserts
        // ping6 both ways in both tunneling modes).
        let s = lab_support::run_passing("dual-stack-kernel");
        assert_eq!(lab_support::figure(&s, "ipv6_source_spoofed"), 3.0);
        return;
    }
    let lab = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab");
    let sc = mip4::lab::scenario::Scenario::load(&lab.join("scenarios/dual-stack-kernel")).unwrap();
    let err = mip4::lab::scenario::run(&lab, &sc, &lab_support::options(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dual-stack-kernel --vm") && err.contains("no sit module"),
        "{err}"
    );
}
